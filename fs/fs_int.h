/* fs/fs_int.h — private to fs/: the file system state shared by the ops_*.c files.
 *
 * Locking: ino->lock (attributes, metadata, staging file, listing) may be held while taking
 * fs->lock (inode table, names, parents, lookup counts, upload queue), never the reverse;
 * two inode locks are never held at once. No lock is held across S3 requests. */
#ifndef BFS_FS_INT_H
#define BFS_FS_INT_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "cache/cache.h"
#include "fs/fs.h"
#include "s3/s3.h"

/* The FUSE operations bucketfs times (fs/trace.c) and counts (fs/stats.c). */
enum bfs_fuse_op {
	BFS_FUSE_LOOKUP, BFS_FUSE_FORGET, BFS_FUSE_FORGET_MULTI, BFS_FUSE_GETATTR,
	BFS_FUSE_SETATTR, BFS_FUSE_READLINK, BFS_FUSE_MKNOD, BFS_FUSE_MKDIR, BFS_FUSE_UNLINK,
	BFS_FUSE_RMDIR, BFS_FUSE_SYMLINK, BFS_FUSE_RENAME, BFS_FUSE_LINK, BFS_FUSE_OPEN,
	BFS_FUSE_READ, BFS_FUSE_WRITE, BFS_FUSE_FLUSH, BFS_FUSE_RELEASE, BFS_FUSE_FSYNC,
	BFS_FUSE_OPENDIR, BFS_FUSE_READDIR, BFS_FUSE_READDIRPLUS, BFS_FUSE_RELEASEDIR,
	BFS_FUSE_FSYNCDIR, BFS_FUSE_STATFS, BFS_FUSE_SETXATTR, BFS_FUSE_GETXATTR,
	BFS_FUSE_LISTXATTR, BFS_FUSE_REMOVEXATTR, BFS_FUSE_CREATE,
	BFS_FUSE_OP_COUNT
};

/* A directory's cached listing: child names and whether each is a directory. */
struct bfs_dirent {
	char *name;
	bool is_dir;
	bool listed;                   /* an object in the LIST result: the fields below hold */
	uint64_t size;
	char etag[72];
	struct timespec last_modified;
};
struct bfs_listing {
	struct bfs_dirent *ents; /* sorted by name; owned */
	size_t n, cap;
	int64_t expire;          /* monotonic ns; listing is trusted until then */
};

struct bfs_inode {
	/* ---- protected by fs->lock ---- */
	fuse_ino_t nodeid;
	uint64_t nlookup;           /* kernel lookup count */
	unsigned pins;              /* in-process references (open handles, uploads, ops) */
	struct bfs_inode *parent;   /* NULL for root and unlinked inodes; holds a pin on parent */
	char *name;                 /* name in parent; owned */
	struct bfs_inode *hnext_id; /* hash chain by nodeid */
	struct bfs_inode *hnext_nm; /* hash chain by (parent, name) */
	bool hashed_nm;             /* in the name table */
	bool unlinked;              /* removed from the tree; no uploads */
	bool queued;                /* on fs->upload queue */
	struct bfs_inode *qnext;    /* upload queue link */

	/* ---- protected by lock ---- */
	pthread_mutex_t lock;
	pthread_cond_t cond;        /* upload finished / staging ready */
	struct stat st;             /* what getattr reports (st_ino stable, see inode.c) */
	bool ino_stored;            /* st.st_ino is the file's own number, stored with it
	                             * (bfs_ino_store), not its key's hash */
	int64_t attr_expire;        /* monotonic ns; st trusted until then */
	char etag[72];              /* ETag of the object in S3; "" if none/unknown */
	struct s3_meta meta;        /* user metadata as in S3 (plus local changes) */
	bool meta_loaded;           /* meta reflects a HEAD (or our own write) */
	bool has_marker;            /* directory: a "dir/" marker object exists */
	char *link_target;          /* symlink target; owned */
	char *link_key;             /* hard-linked file: its content object ".bucketfs/inodes/ID"
				     * (data and attributes live there; the name object points to
				     * it); NULL for a plain object. owned */
	struct bfs_listing *listing;/* directory listing cache; owned */

	int open_count, open_writers;
	int stage_fd;               /* staging data file (journal entry) or -1 */
	bool attr_only;             /* the entry holds attribute changes only: the content is the
	                             * object at the key (its ETag base_etag); stage_fd is empty */
	uint64_t stage_id;          /* journal id of stage_fd */
	bool sealed;                /* a committed journal record names the first sealed_size
	                             * bytes of stage_fd: they change only in a copy
	                             * (bfs_stage_unseal), so a crash recovers what was closed */
	uint64_t sealed_size;
	uint64_t prev_id;           /* the committed entry stage_id is a changed copy of, until
	                             * the next commit replaces it (0: none) */
	char *remote_key;           /* where the object is in S3 while dirty (NULL: nowhere yet) */
	char base_etag[72];         /* ETag the staged data started from */
	char kcache_etag[72];       /* version the kernel's page cache was filled from (open) */
	struct timespec touched;    /* directory: when this mount last added or removed an entry
	                             * (its mtime and ctime; kept over an older stored mtime) */
	bool times_due;             /* directory: storing touched with the marker is queued */
	char *neg_name;             /* directory: a name S3 just said is not there, and when */
	int64_t neg_at;             /* (monotonic ns): the call after the kernel's lookup of it
	                             * (rename's target) need not ask again (fs/attr.c) */
	bool open_fresh;            /* attributes fetched, no open since: the open right after a
	                             * lookup need not ask S3 again (fs/ops_file.c) */
	uint64_t gen;               /* bumped by every change that needs an upload */
	uint64_t uploaded_gen;      /* gen last uploaded */
	bool committed;             /* journal record durable for gen */
	bool uploading;
	bool staging;               /* bfs_stage_open is downloading the content */
	bool committing;            /* a journal commit runs without the lock */
	bool held;                  /* a rename onto this name, or its unlink, runs: no upload
	                             * starts until it ends (it discards or reschedules the
	                             * staged data) */
	int upload_err;             /* last upload failure, reported by flush/fsync */
	int64_t upload_err_at;      /* when it failed (monotonic ns) */
	unsigned upload_tries;      /* failed uploads in a row (backoff) */
	int64_t upload_due;         /* monotonic ns */
	struct bfs_stream *stream;  /* streaming multipart upload of the staged data, or NULL
	                             * (fs/stream_upload.c); owned by the stream pool */
	bool seq_ok;                /* every write since the staged file was empty continued
	                             * where the previous one ended (a candidate for streaming) */
	uint64_t seq_end;           /* where the last write ended */
};

struct bfs_fs {
	struct bfs_options *opts;   /* not owned */
	struct s3_client *s3;       /* owned */
	struct cache *cache;        /* owned */
	struct bfs_defaults defaults;
	struct fuse_session *se;

	pthread_mutex_t lock;       /* inode table, tree, upload queue */
	struct bfs_inode **by_id;   /* hash by nodeid */
	struct bfs_inode **by_nm;   /* hash by (parent, name) */
	size_t nbuckets;
	size_t ninodes;
	uint64_t next_nodeid;
	struct bfs_inode *root;

	/* write-back */
	pthread_cond_t upload_cond; /* queue changed / shutting down */
	pthread_cond_t idle_cond;   /* an upload finished */
	struct bfs_inode *qhead;    /* pending uploads, in due order (FIFO) */
	int uploads_running;
	bool stopping;
	pthread_t *workers;
	int nworkers;

	int64_t stat_ttl_ns;
	int64_t upload_delay_ns;
	struct bfs_readahead *readahead; /* owned; NULL with readahead=0 (fs/readahead.c) */

	/* streaming multipart writes (fs/stream_upload.c) */
	pthread_mutex_t stream_lock;     /* every stream's shared state and the list; innermost */
	pthread_cond_t stream_cond;      /* a part became ready, was hashed or sent; a stream went */
	struct bfs_stream *streams;      /* live streams (stream_lock) */
	pthread_t *stream_workers;       /* stream_budget senders */
	int nstream_workers;
	bool stream_stopping;            /* stream_lock */
	atomic_uint_least64_t streamed_parts; /* parts sent while their file was being written */

	/* statistics (fs/stats.c): lock-free */
	int64_t started_ns;              /* monotonic, at bfs_fs_new */
	struct bfs_hist fuse_latency[BFS_FUSE_OP_COUNT]; /* every call, by op (fs/trace.c) */
};

/* Hard links (docs/layout.md): content objects live under PREFIX + ".bucketfs/inodes/";
 * a name object carries x-amz-meta-bfs-link, the content object x-amz-meta-bfs-nlink. */
#define BFS_INTERNAL_DIR ".bucketfs"
#define BFS_LINK_META "bfs-link"
#define BFS_NLINK_META "bfs-nlink"
/* ETag of every name object of a hard link: its body is empty, and a PUT's ETag is checked
 * to be the body's MD5 (s3/object.c) */
#define BFS_EMPTY_ETAG "d41d8cd98f00b204e9800998ecf8427e"

/* ---- inode.c ---- */
void bfs_inode_table_init(struct bfs_fs *fs);
void bfs_inode_table_free(struct bfs_fs *fs);
/* Finds a live inode by nodeid and pins it; NULL if unknown. Caller bfs_inode_unpin()s. */
struct bfs_inode *bfs_inode_get(struct bfs_fs *fs, fuse_ino_t nodeid);
/* Child of parent called name, pinned, or NULL. */
struct bfs_inode *bfs_inode_child(struct bfs_fs *fs, struct bfs_inode *parent, const char *name);
/* Creates (or returns the existing) child inode, pinned. mode gives the type. */
struct bfs_inode *bfs_inode_make(struct bfs_fs *fs, struct bfs_inode *parent, const char *name,
				 mode_t type);
void bfs_inode_pin(struct bfs_fs *fs, struct bfs_inode *ino);
/* Pins every inode for which pick (called under fs->lock, without the inode's lock: it may
 * only look at fields it can read racily) is true. Returns a malloc'd array of *n pinned
 * inodes; the caller unpins each and frees the array. */
struct bfs_inode **bfs_inode_pin_matching(struct bfs_fs *fs,
					  bool (*pick)(const struct bfs_inode *ino), size_t *n);
/* Waits until no upload, download into staging or journal commit runs on ino (ino->lock
 * held; released while waiting). */
void bfs_inode_wait_busy(struct bfs_inode *ino);
void bfs_inode_unpin(struct bfs_fs *fs, struct bfs_inode *ino);
/* Adds n to the kernel lookup count (after a successful reply with the entry). */
void bfs_inode_lookup_ref(struct bfs_fs *fs, struct bfs_inode *ino, uint64_t n);
void bfs_inode_forget(struct bfs_fs *fs, fuse_ino_t nodeid, uint64_t n);
/* Object key of ino (directories end in '/', root = prefix). malloc'd, caller frees. */
char *bfs_inode_key(struct bfs_fs *fs, struct bfs_inode *ino);
/* Key of the object holding ino's data and attributes: its link_key when hard-linked, else
 * bfs_inode_key. malloc'd. ino->lock held. */
char *bfs_data_key(struct bfs_fs *fs, struct bfs_inode *ino);
/* Key of name inside directory parent (dir=true adds the trailing '/'). malloc'd. */
char *bfs_child_key(struct bfs_fs *fs, struct bfs_inode *parent, const char *name, bool dir);
/* Longest name bucketfs creates or shows (statfs f_namemax): what POSIX tools expect; S3
 * keys (S3_MAX_KEY bytes) must also hold the prefix and the directories above. */
#define BFS_NAME_MAX 255
/* 0 if name may be made in dir (is_dir: as a directory): at most BFS_NAME_MAX bytes, and its
 * key within S3_MAX_KEY; else -ENAMETOOLONG (or -ENOMEM). */
int bfs_name_check(struct bfs_fs *fs, struct bfs_inode *dir, const char *name, bool is_dir);
/* Moves ino to (newparent, newname); an inode already there is detached (unlinked). */
void bfs_inode_move(struct bfs_fs *fs, struct bfs_inode *ino, struct bfs_inode *newparent,
		    const char *newname);
/* Detaches ino from the tree (unlink/rmdir). */
void bfs_inode_detach(struct bfs_fs *fs, struct bfs_inode *ino);
/* Inode numbers (docs/layout.md "Inode numbers"). A file bucketfs creates gets a random
 * number of its own, stored with it as x-amz-meta-bfs-ino "NUMBER-KEYHASH": the number
 * counts only at the key whose hash it names, so a copy another S3 tool makes (it copies
 * the metadata along) never shares it. Everything else is numbered by its key's hash. */
#define BFS_INO_META "bfs-ino"
/* The key's number: FNV-1a 64 of the key, 63 bits, never 0 or 1. */
ino_t bfs_ino_of_key(const char *key);
/* A fresh random number (never 0 or 1), or 0 if the random source failed. */
ino_t bfs_ino_random(void);
/* The number m stores for the object at key, or 0: none, or stored for another key. */
ino_t bfs_ino_stored(const struct s3_meta *m, const char *key);
/* Stores n in m as the number of the object at key. 0 or -ENOMEM. */
int bfs_ino_store(struct s3_meta *m, ino_t n, const char *key);
/* Numbers ino (ino->lock held) from the metadata of the object at key (m nullable): its
 * stored number, or else the key's hash. */
void bfs_ino_assign(struct bfs_inode *ino, const struct s3_meta *m, const char *key);

/* ---- attr.c: attributes from S3 ---- */
/* Fresh attributes of ino from S3 (HEAD, or listing for implicit dirs) unless cached and
 * unexpired or dirty; force ignores the cache. Returns 0 or -errno (-ENOENT: gone). */
int bfs_attr_refresh(struct bfs_fs *fs, struct bfs_inode *ino, bool force);
/* Resolves name in parent: cache, then S3. On success returns a pinned inode in *out. */
int bfs_attr_lookup(struct bfs_fs *fs, struct bfs_inode *parent, const char *name,
		    struct bfs_inode **out);
/* Applies a HEAD result to ino (ino->lock held). */
void bfs_attr_apply(struct bfs_fs *fs, struct bfs_inode *ino, const struct s3_object *o,
		    bool is_dir);
/* Builds the metadata to store for ino at key (its data key, or where a copy goes): its
 * meta with mode/uid/gid/times from st and its own inode number, if it has one, stored
 * for key (ino->lock held). dst initialised by the callee. */
int bfs_attr_meta(struct bfs_inode *ino, const char *key, struct s3_meta *dst);
/* Entry/attr timeouts in seconds for replies. */
double bfs_attr_timeout(struct bfs_fs *fs);
/* Close-to-open (the default): every change is in S3 when its call returns. */
bool bfs_sync_changes(const struct bfs_fs *fs);
/* What getattr and entries report for ino: its st, with a directory's link count 2 + its
 * subdirectories when its listing is known, and 0 links once a file lost its last name. */
void bfs_attr_report(struct bfs_fs *fs, struct bfs_inode *ino, struct stat *st);
void bfs_fill_entry(struct bfs_fs *fs, struct bfs_inode *ino, struct fuse_entry_param *e);

/* ---- listing.c ---- */
/* Reads the whole listing of directory dir from S3 (all pages) into *out (caller frees with
 * bfs_listing_free), merged with local inodes not yet uploaded. */
int bfs_listing_fetch(struct bfs_fs *fs, struct bfs_inode *dir, struct bfs_listing **out);
void bfs_listing_free(struct bfs_listing *l);
int bfs_listing_add(struct bfs_listing *l, const char *name, bool is_dir);
void bfs_listing_remove(struct bfs_listing *l, const char *name);
/* Index of name in l or -1. */
long bfs_listing_find(const struct bfs_listing *l, const char *name);
struct bfs_listing *bfs_listing_copy(const struct bfs_listing *l);
/* After a local create/remove of name in dir: updates dir's cached listing (if any) and
 * sets dir's mtime and ctime to now (stored within BFS_DIR_TIMES_DELAY_S: dir_times.c). */
void bfs_listing_note(struct bfs_fs *fs, struct bfs_inode *dir, const char *name, bool is_dir,
		      bool present);

/* ---- dir_times.c: a directory's times in S3, with a bounded delay ---- */
#define BFS_DIR_TIMES_DELAY_S 5
/* dir's times changed in this mount (dir->touched): queues storing them with its marker,
 * BFS_DIR_TIMES_DELAY_S from the first change (no lock held). */
void bfs_dir_times_note(struct bfs_fs *fs, struct bfs_inode *dir);
/* Stores dir's queued times in its marker (HEAD + conditional metadata CopyObject). Upload
 * workers call it; no lock held. 0 or -errno. */
int bfs_dir_times_store(struct bfs_fs *fs, struct bfs_inode *dir);

/* ---- mime.c: the Content-Type of a new object from its name ---- */

#define BFS_MIME_TYPES "/etc/mime.types"
/* An extension -> type table. Owner: whoever loaded it; read-only, so thread-safe. */
struct bfs_mime;
/* Reads a mime.types file ("type ext ext...", '#' comments; the first line naming an
 * extension wins). *out is malloc'd (bfs_mime_free). 0 or -ENOMEM. */
int bfs_mime_parse(FILE *f, struct bfs_mime **out);
void bfs_mime_free(struct bfs_mime *m);
/* The type for the extension of name's last component (case-insensitive), else
 * "application/octet-stream" (also for m NULL). Static storage / owned by m. */
const char *bfs_mime_lookup(const struct bfs_mime *m, const char *name);
/* bfs_mime_lookup in BFS_MIME_TYPES, read on the first call (thread-safe; a missing file
 * is an empty table). */
const char *bfs_mime_type(const char *name);

/* ---- xattr_s3.c: the virtual user.s3.* attributes (an object's standard headers) ---- */

#define BFS_S3_XATTR_PREFIX "user.s3."
#define BFS_S3_XATTR_ETAG   "user.s3.etag"
/* True for a name under user.s3. (never stored in x-amz-meta-xattr). */
bool bfs_s3_xattr_is(const char *name);
/* getxattr of such a name from m (the inode's metadata) and etag ("" = not in S3): the
 * length, -ENODATA (no such header, or a name under user.s3. that is none of the five),
 * -ERANGE. */
ssize_t bfs_s3_xattr_get(const struct s3_meta *m, const char *etag, const char *name,
			 void *buf, size_t size);
/* Sets (val non-NULL) or removes the header in m. -EPERM for user.s3.etag, -EOPNOTSUPP
 * for other unknown names, -EINVAL for a value holding CR, LF or NUL or empty, -E2BIG over 1 KiB, -EEXIST /
 * -ENODATA for XATTR_CREATE / XATTR_REPLACE / removal as setxattr(2). */
int bfs_s3_xattr_change(struct s3_meta *m, const char *name, const void *val, size_t len,
			int flags);

/* ---- record.c: the line format of journal records and metadata-index entries ---- */
struct bfs_field {
	const char *tag;
	const char *value; /* encode: borrowed, NULL skips; decode: malloc'd or NULL */
};
/* "magic\n" + one line per field + one per metadata entry. malloc'd, or NULL (ENOMEM). */
char *bfs_record_encode(const char *magic, const struct bfs_field *fields, size_t n,
			const struct s3_meta *m);
/* Parses rec; fills the fields named in fields[] (free with bfs_record_fields_free) and m
 * (initialised by the callee). -EINVAL if the magic does not match. */
int bfs_record_decode(const char *rec, size_t len, const char *magic, struct bfs_field *fields,
		      size_t n, struct s3_meta *m);
void bfs_record_fields_free(struct bfs_field *fields, size_t n);

/* ---- readahead.c: sequential detection and parallel prefetch into the block cache ---- */
/* Per open file handle, guarded by its inode's lock. Zeroed at open. */
struct bfs_ra {
	uint64_t reads;  /* reads seen */
	uint64_t next;   /* where the last read ended */
	uint64_t window; /* bytes ahead to keep fetched; 0 after a random read */
	uint64_t ahead;  /* first block not yet queued */
};
int bfs_readahead_start(struct bfs_fs *fs);
/* Stops the workers; queued blocks are dropped. */
void bfs_readahead_stop(struct bfs_fs *fs);
/* A read of [off, off+len) of ino's object through handle state st: grows or resets the
 * window and queues the blocks ahead that are not queued yet. Takes ino->lock. */
void bfs_readahead_note(struct bfs_fs *fs, struct bfs_inode *ino, struct bfs_ra *st,
			uint64_t off, size_t len);
/* For statistics: -o readahead= (0: off), the window of the latest sequential read, blocks
 * queued now and fetched so far. Thread-safe. */
struct bfs_ra_stats {
	uint64_t window_max, window_last, queued, prefetched;
};
void bfs_readahead_stats(struct bfs_fs *fs, struct bfs_ra_stats *out);

/* ---- bdi.c ---- */
/* Raises the kernel's readahead for the mount to one block's worth (root only; once, at the
 * first open, when the kernel has applied its own cap). */
void bfs_bdi_tune(struct bfs_fs *fs);

/* ---- upload.c: write-back ---- */
int bfs_upload_start(struct bfs_fs *fs);
/* Waits for every pending upload, then stops the workers. */
void bfs_upload_stop(struct bfs_fs *fs);
/* Makes ino's staged data + metadata durable in the journal (ino->lock held). */
int bfs_upload_commit(struct bfs_fs *fs, struct bfs_inode *ino);
/* Queues ino for upload after the upload delay (delay=false: now). */
void bfs_upload_schedule(struct bfs_fs *fs, struct bfs_inode *ino, bool now);
/* Queues ino for the upload workers at monotonic time due, unless it is queued already (a
 * directory: its times, fs/dir_times.c). */
void bfs_upload_schedule_at(struct bfs_fs *fs, struct bfs_inode *ino, int64_t due);
/* Uploads ino now and waits; returns the upload's result. */
int bfs_upload_sync(struct bfs_fs *fs, struct bfs_inode *ino);
/* For close() and new nodes with close-to-open: bfs_upload_sync, except that a refusal S3
 * will repeat (bfs_upload_permanent) and nothing changed since is returned, not sent again;
 * errors as the caller reports them (bfs_upload_errno). */
int bfs_upload_flush(struct bfs_fs *fs, struct bfs_inode *ino);
/* An upload's failure as a writer sees it: the server kept rejecting our bytes (BadDigest,
 * ETag mismatch), kept failing or could not be reached is EIO; "no such bucket", "access
 * denied" and the like keep their meaning. */
int bfs_upload_errno(int rc);
/* Creates a staging file for ino holding its current content (download unless trunc), or
 * fills an attribute-only one (bfs_stage_attrs) with it. ino->lock held; drops and retakes
 * it around the download. */
int bfs_stage_open(struct bfs_fs *fs, struct bfs_inode *ino, bool trunc);
/* A journal entry for attribute changes of ino, a regular file whose content is in S3 and
 * nothing else pending: uploaded as one CopyObject onto itself, or folded into a rename's
 * copy. Then bfs_mark_dirty + bfs_upload_commit. ino->lock held. */
int bfs_stage_attrs(struct bfs_fs *fs, struct bfs_inode *ino);
/* Drops ino's staging file and journal entry (unlink of a dirty file). ino->lock held. */
void bfs_stage_discard(struct bfs_fs *fs, struct bfs_inode *ino);
/* ino lost its last name while still open: its journal entry is withdrawn (a crash must
 * not bring the name back), its staging file stays for the open handles until their last
 * close discards it. ino->lock held. */
void bfs_stage_forget(struct bfs_fs *fs, struct bfs_inode *ino);
/* Before ino's staged data changes from byte `from` on (a write at from, a truncate to
 * from): if a committed journal record names any of those bytes, the data moves to a new
 * journal entry first (its first `keep` bytes copied), which the next commit puts in the
 * record's place. So the entry recovery finds always holds what was closed, never part of
 * a later write (fs/stage_copy.c). ino->lock held. */
int bfs_stage_unseal(struct bfs_fs *fs, struct bfs_inode *ino, uint64_t from, uint64_t keep);
/* Marks a change that needs an upload (ino->lock held). */
void bfs_mark_dirty(struct bfs_inode *ino);
/* Uploads entries found in the journal at mount (crash recovery). */
int bfs_upload_recover(struct bfs_fs *fs);
/* Whether an upload failure rc will fail the same way however often it is tried (S3 refused
 * the key, the size, the metadata or the bucket): the worker does not retry it on a timer. */
bool bfs_upload_permanent(int rc);
/* Whether ino has local changes not yet in S3 (ino->lock held). */
bool bfs_is_dirty(const struct bfs_inode *ino);

/* ---- stream_upload.c: streaming multipart writes (docs/streaming.md) ---- */
/* Private keys of streamed uploads until their object is copied to its key. */
#define BFS_STREAM_DIR BFS_INTERNAL_DIR "/streams/"
struct bfs_stream;
/* The part layout of a stream with part size base: 1000 parts of base, 1000 of 2*base, ...
 * 256*base, then 1000 of 5 GiB (none above 5 GiB), so 10,000 parts cover 5 TiB from 5M.
 * Length and offset of part index i (0-based), and how many parts cover size bytes
 * (10001 when more than S3 allows). Pure. */
uint64_t bfs_stream_part_len(uint64_t base, size_t i);
uint64_t bfs_stream_part_off(uint64_t base, size_t i);
size_t bfs_stream_parts_for(uint64_t base, uint64_t size);
/* Starts the stream_budget senders / stops them after aborting every stream left (after
 * bfs_upload_stop). */
int bfs_stream_start(struct bfs_fs *fs);
void bfs_stream_stop(struct bfs_fs *fs);
/* A write of n bytes at off landed in ino's staging file, which held size_before bytes
 * (ino->lock held): starts a stream (a file written sequentially from 0 past part_size,
 * close-to-open), makes the parts behind the writer ready, or cancels the stream when the
 * write went into a part already sent. No I/O. */
void bfs_stream_note_write(struct bfs_fs *fs, struct bfs_inode *ino, uint64_t off, uint64_t n,
			   uint64_t size_before);
/* ino's staged data was truncated to size (ino->lock held): cancels a stream with parts
 * beyond it. */
void bfs_stream_note_truncate(struct bfs_fs *fs, struct bfs_inode *ino, uint64_t size);
/* Cancels ino's stream, if any (ino->lock held; its upload is aborted in the background). */
void bfs_stream_cancel(struct bfs_fs *fs, struct bfs_inode *ino);
/* The same for a stream whose inode is being destroyed (no lock held). */
void bfs_stream_detach(struct bfs_stream *s);
/* For do_upload (ino->lock held): takes ino's stream (NULL if none) for bfs_stream_finish
 * or bfs_stream_drop; writes from now on start afresh. */
struct bfs_stream *bfs_stream_take(struct bfs_inode *ino);
/* Gives up a taken stream without finishing it (aborted in the background). */
void bfs_stream_drop(struct bfs_stream *s);
/* Without locks: sends what is left of taken stream s as the object key of size bytes,
 * seals m (digests, signature) from the digests taken on the way, completes the upload and
 * copies it to key with m and content_type (CopyObject REPLACE, x-amz-copy-source-if-match
 * the completed ETag), deletes the private object; out gets the ETag at key. Frees s
 * (aborting the upload on failure). 0, -ECANCELED (the stream cannot make this object:
 * upload it whole), or the S3 failure. */
int bfs_stream_finish(struct bfs_stream *s, const char *key, uint64_t size,
		      const char *content_type, struct s3_meta *m, struct s3_object *out);

/* ---- link_intent.c: crash safety of hard-link changes ---- */
#define BFS_INTENT_MAX 2
/* A change of the names of one content object. Strings borrowed. */
struct bfs_link_change {
	const char *link_key;                /* the content object */
	bool is_new;                         /* the change creates it (a file's first link) */
	const char *adds[BFS_INTENT_MAX];    /* name keys made to point to link_key, or NULL */
	const char *removes[BFS_INTENT_MAX]; /* name keys that stop pointing to it, or NULL */
};
/* Before the change: reads the content's link count (one HEAD unless is_new) and makes the
 * change durable in the journal; *id names the record. 0 or -errno (then do not change). */
int bfs_link_intent_begin(struct bfs_fs *fs, const struct bfs_link_change *ch, uint64_t *id);
/* The change is complete, or failed without a trace: drops the record (id 0: no-op). */
void bfs_link_intent_end(struct bfs_fs *fs, uint64_t id);
/* Whether a journal record is an intent (else a data entry, fs/upload.c). */
bool bfs_link_intent_is(const char *rec);
/* Recovery: sets the content's count to the names that point to it now (deletes it when
 * none does) and drops the record. 0 or -errno (record kept). */
int bfs_link_intent_recover(struct bfs_fs *fs, const struct cache_dirty *d);

/* ---- unmount.c: unmount and mount again (see the file) ---- */
/* The daemon notes in its cache lock file that it serves mountpoint (mounted) or that the
 * kernel let go and it finishes its uploads (!mounted). */
void bfs_owner_say(struct cache *c, bool mounted, const char *mountpoint);
/* Before opening the cache in dir: 0 once nobody holds it. Waits (with a note on stderr of
 * what is left to upload) while an unmounted daemon finishes, at most timeout_s seconds;
 * -EBUSY (said on stderr) if a live mount holds it or the wait ran out. */
int bfs_cache_wait(const char *dir, int timeout_s);
/* bucketfs -u MOUNTPOINT: unmounts, waits for the daemon with progress on stderr; the exit
 * status (0: everything is in S3). */
int bfs_unmount_main(const char *mountpoint);

/* ---- trace.c: every FUSE operation timed (slow_ms log, statistics) ---- */
/* The kernel's name of op ("LOOKUP", "BATCH_FORGET", ...; static storage). */
const char *bfs_fuse_op_name(enum bfs_fuse_op op);
/* Wraps every op set in ops (called once, by bfs_fs_ops, before the session exists; not
 * thread-safe) so that each call is timed; the wrappers call the ops as they were. */
void bfs_trace_ops(struct fuse_lowlevel_ops *ops);
/* Whether a call that took ns nanoseconds goes to the slow-call log (-o slow_ms=). */
bool bfs_trace_is_slow(const struct bfs_options *o, int64_t ns);

/* ---- stats.c: live statistics, read through a virtual extended attribute ---- */
/* Everything bucketfs-stat shows, at one moment (docs/stats.md). Strings borrowed from the
 * file system's options. */
struct bfs_stats_snapshot {
	const char *bucket, *prefix, *mountpoint;
	long pid;
	int64_t uptime_ns;
	struct s3_metrics s3;
	struct cache_stats cache;
	uint64_t uploads_queued, uploads_running;  /* inodes waiting for / in an upload */
	uint64_t streamed_parts;                   /* parts sent while their file was written */
	struct bfs_ra_stats readahead;
	struct bfs_hist_summary fuse[BFS_FUSE_OP_COUNT];
};
/* Takes the snapshot: atomic counters, and fs->lock for the upload queue (no I/O under it). */
void bfs_stats_take(struct bfs_fs *fs, struct bfs_stats_snapshot *out);
/* The snapshot as JSON / as Prometheus text exposition (version 0.0.4). malloc'd,
 * NUL-terminated, owned by the caller; NULL on ENOMEM. Pure: for tests too. */
char *bfs_stats_json(const struct bfs_stats_snapshot *s);
char *bfs_stats_prom(const struct bfs_stats_snapshot *s);
/* getxattr on the mount root of BFS_STATS_XATTR or BFS_STATS_XATTR_PROM: replies (the
 * document, or EACCES for anyone but the mounting user and root, ERANGE if size is too
 * small) and returns true. Any other name: false, nothing done. */
bool bfs_stats_getxattr(fuse_req_t req, struct bfs_fs *fs, fuse_ino_t nodeid, const char *name,
			size_t size);
/* Whether name is one of the statistics attributes (they cannot be set or removed). */
bool bfs_stats_is_xattr(fuse_ino_t nodeid, const char *name);

/* ---- ops_*.c ---- */
void bfs_ops_entry(struct fuse_lowlevel_ops *ops);
void bfs_ops_dir(struct fuse_lowlevel_ops *ops);
void bfs_ops_file(struct fuse_lowlevel_ops *ops);
void bfs_ops_xattr(struct fuse_lowlevel_ops *ops);
void bfs_ops_rename(struct fuse_lowlevel_ops *ops);
void bfs_ops_link(struct fuse_lowlevel_ops *ops);
/* ops_link.c: removes one name (name_key) of hard-linked ino and drops the content's link
 * count (deleting the content with the last name). */
int bfs_link_unlink(struct bfs_fs *fs, const char *name_key, struct bfs_inode *ino);
/* Adds delta to the link count of content object link_key: 0, or 1 when the count reached
 * 0 and the content was deleted, or -errno. out (nullable) gets the new content object. */
int bfs_link_set_nlink(struct bfs_fs *fs, const char *link_key, long delta, struct s3_object *out);
/* Puts the content object's current link count into m (before an upload or metadata copy
 * of a linked file overwrites it). */
int bfs_link_fresh_nlink(struct bfs_fs *fs, const char *link_key, struct s3_meta *m);
/* The content link_key changed (link count, data, attributes): every inode sharing it
 * rereads its attributes, and the kernel forgets what it cached for them (and for self). */
void bfs_link_changed(struct bfs_fs *fs, struct bfs_inode *self, const char *link_key);
/* 0 if directory dir has no entries (in S3 or pending), -ENOTEMPTY, or -errno. */
int bfs_dir_empty(struct bfs_fs *fs, struct bfs_inode *dir);
/* Opens ino for a handle in fi (pins ino for the handle). */
int bfs_open_file(struct bfs_fs *fs, struct bfs_inode *ino, int flags, struct fuse_file_info *fi);
/* Creates a new node name in parent (type and permissions in mode; rdev = device number of
 * a device node; link = symlink target), owned by the caller of req, and persists it
 * (bfs_persist_new) unless create: a file being created (open(O_CREAT)) is persisted by
 * its close. On failure nothing is left. *out pinned. */
int bfs_make_node(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		  dev_t rdev, const char *link, bool create, struct bfs_inode **out);
/* A new node's journal record, then its upload: now (close-to-open) or scheduled
 * (writeback). Returns 0 or the error that kept it out of the journal or of S3. */
int bfs_persist_new(struct bfs_fs *fs, struct bfs_inode *ino);
/* Stores ino's changed attributes/metadata (ino->lock held): folded into a pending upload
 * when one exists, else one CopyObject (files) or marker PUT (directories). A clean regular
 * file's change waits in the journal unless now; with now, an object changed in S3 since
 * it was read is -ESTALE (else -EAGAIN). */
int bfs_store_meta(struct bfs_fs *fs, struct bfs_inode *ino, bool now);
/* Fills ops with every operation bucketfs implements. */
void bfs_fs_ops(struct fuse_lowlevel_ops *ops);
int bfs_fs_new(struct bfs_options *o, struct s3_client *s3, struct cache *cache,
	       struct bfs_fs **out);
void bfs_fs_free(struct bfs_fs *fs);

/* ==== integrity.c: block digests and HMAC signatures (docs/integrity.md) ====
 * Thread-safe unless stated. Functions return 0 or -errno. Never log keys or signatures. */
#define BFS_INTEGRITY_BLOCK (1u << 20)       /* digest block size written by this version */
#define BFS_DIGEST_DIR ".bucketfs/digests/"  /* side objects, under the mount's prefix */

enum bfs_sig_status { BFS_SIG_NONE, BFS_SIG_OK, BFS_SIG_BAD, BFS_SIG_UNKNOWN_KEY };
const char *bfs_sig_status_name(enum bfs_sig_status s); /* "ok", "unsigned", ... (static) */

/* HMAC-SHA256 of msg with key into out. */
void bfs_hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen,
		     unsigned char out[32]);
/* Root of a digest list: SHA-256("bfs-blocks-v1\n<block_size>\n" || list). */
void bfs_integrity_root(uint64_t block_size, const unsigned char *list, size_t nblocks,
			unsigned char root[32]);
/* The string a signature covers (format version, key, mode, uid, gid, size, mtime, digest
 * root), each field "name=<len>:<bytes>\n". malloc'd, caller frees; NULL on ENOMEM. */
char *bfs_integrity_canonical(const char *key, const struct s3_meta *m, uint64_t size);

/* Reads o->hmac_key_file (refused with -EACCES if group/other may access it) into
 * o->hmac_keys and resolves o->hmac_mode's default. One line into err on failure. */
int bfs_integrity_load_keys(struct bfs_options *o, char *err, size_t errlen);
void bfs_integrity_free_keys(struct bfs_options *o); /* wipes; called by bfs_options_free */

/* Replaces bfs-sig/bfs-keyid in m with a signature by the first key (removes them when
 * hmac=off or no key). m must already carry the final mode/uid/gid/mtime/bfs-digest. */
int bfs_integrity_sign(const struct bfs_options *o, const char *key, uint64_t size,
		       struct s3_meta *m);
/* What the signature in m says about (key, size, m). */
enum bfs_sig_status bfs_integrity_sig_status(const struct bfs_options *o, const char *key,
					     uint64_t size, const struct s3_meta *m);
/* The hmac= policy for an object: 0 to serve it, -EACCES to refuse it (logged, naming key;
 * unsigned objects under verify are logged once). */
int bfs_integrity_policy(const struct bfs_options *o, const char *key, uint64_t size,
			 const struct s3_meta *m);
/* For attr.c/ops_dir.c: call on every HEAD result o of key (full S3 key) before its
 * attributes are used; o NULL (implicit directory) is always 0. 0 or -EACCES. */
int bfs_integrity_check_meta(struct bfs_fs *fs, const char *key, const struct s3_object *o);

/* Upload side. Digests fd's first size bytes (1 MiB SHA-256 blocks; MD5 too when the upload
 * will be multipart), PUTs the digest list side object when there is more than one block,
 * and writes bfs-digest (+ bfs-blocks / bfs-md5) and the signature into m. Call without
 * locks, right before s3_put_fd(key, fd, size, m). */
int bfs_integrity_seal(struct s3_client *s3, const struct bfs_options *o, const char *key,
		       int fd, uint64_t size, struct s3_meta *m);
/* Incremental sealing (fs/stream_upload.c): a digester fed the content in order, in
 * pieces of any size (1 MiB SHA-256 blocks and the whole-content MD5), then sealed like
 * bfs_integrity_seal (side object, headers, signature) without reading the content again.
 * Not thread-safe: one feeder at a time. Owner: the caller (bfs_digester_free). */
struct bfs_digester;
int bfs_digester_new(struct bfs_digester **out);
int bfs_digester_update(struct bfs_digester *d, const void *p, size_t n);
void bfs_digester_free(struct bfs_digester *d);
/* d has seen exactly the size bytes of the object; finishes it (once). */
int bfs_integrity_seal_digester(struct s3_client *s3, const struct bfs_options *o,
				const char *key, struct bfs_digester *d, uint64_t size,
				struct s3_meta *m);
/* Whether object o (a HEAD result) holds exactly fd's first size bytes, by its whole-content
 * MD5 (plain ETag or bfs-md5); false when o carries none. Reads fd. */
bool bfs_integrity_same_content(const struct s3_object *o, int fd, uint64_t size);
/* The same for a memory body (s3_put_buf: directory markers, symlinks). */
int bfs_integrity_seal_buf(struct s3_client *s3, const struct bfs_options *o, const char *key,
			   const void *body, size_t len, struct s3_meta *m);
/* Metadata-only change (CopyObject REPLACE): m is the new metadata of new_key, carrying the
 * old bfs-digest. Signs m if the old metadata `old` of old_key has a valid signature, else
 * leaves m unsigned (never blesses what was not verified). */
int bfs_integrity_resign(const struct bfs_options *o, const char *old_key,
			 const struct s3_meta *old, uint64_t size, const char *new_key,
			 struct s3_meta *m);
/* Server-side copy src -> dst that keeps the signature valid (HEAD, re-sign, CopyObject
 * REPLACE) when signing; a plain copy otherwise. For renames of whole directories. */
int bfs_integrity_copy(struct s3_client *s3, const struct bfs_options *o, const char *src,
		       const char *dst);

/* Read side. A verifier for one object version (key, etag, size, metadata m); applies the
 * hmac= policy first (-EACCES) and parses the digest headers (-EIO if malformed).
 * *out owned by the caller, freed with bfs_verify_free. Thread-safe to use concurrently. */
struct bfs_verify;
int bfs_integrity_prepare(const struct bfs_options *o, const char *key, const char *etag,
			  uint64_t size, const struct s3_meta *m, struct bfs_verify **out);
void bfs_verify_free(struct bfs_verify *v);
bool bfs_verify_has_digest(const struct bfs_verify *v);
/* Checks [off, off+len) (whole digest blocks, or to the end) against the block digests,
 * loading the digest list if needed. -EIO and *bad_block on a mismatch. */
int bfs_verify_blocks(struct s3_client *s3, struct bfs_verify *v, const char *key, uint64_t off,
		      const unsigned char *buf, size_t len, uint64_t *bad_block);
/* Whole-content MD5 check (plain ETag or bfs-md5); true when it matches or cannot apply. */
bool bfs_verify_md5(const struct bfs_verify *v, const unsigned char *buf, size_t len);
/* The cache fetch: GETs the digest blocks covering [off, off+len) (If-Match if_match),
 * verifies them (or the MD5 for a whole-object read without digests), refetches once on a
 * mismatch, then -EIO with a log line naming the object. Returns bytes copied into buf. */
ssize_t bfs_integrity_fetch(struct s3_client *s3, struct bfs_verify *v, const char *key,
			    const char *if_match, uint64_t off, size_t len, void *buf);
/* For readlink and other whole-body reads: policy + digest/MD5 check of body. 0, -EACCES,
 * -EIO. */
int bfs_integrity_check_body(struct bfs_fs *fs, const char *key, const char *etag,
			     const struct s3_meta *m, const void *body, size_t len);
/* For bfs_stage_open after s3_get_to_fd: checks the downloaded copy (fd, size bytes) of
 * version etag of key against m before it can be modified and re-signed. 0, -EACCES, -EIO. */
int bfs_integrity_verify_fd(struct bfs_fs *fs, const char *key, const char *etag,
			    const struct s3_meta *m, int fd, uint64_t size);
/* ==== end of integrity.c ==== */


/* ==== credential sources (fs/aws_config.c; used by fs/creds.c and fs/options.c) ==== */

/* Writes "bucketfs: " + the message into err (one line) and returns rc. */
int bfs_say(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* explicit_bzero + free of a NUL-terminated secret (NULL is fine). */
void bfs_wipe_free(char *s);
/* Reads a regular file (up to 1 MiB) into *out (malloc'd, NUL-terminated; the caller wipes
 * it with bfs_wipe_free). secret: refuse (-EACCES with a message) a file group or others may
 * access. mode (nullable) gets st_mode. -ENOENT without a message if it does not exist. */
int bfs_file_read(const char *path, bool secret, char **out, mode_t *mode, char *err,
		  size_t errlen);

/* Static keys of one profile in one file; strings malloc'd, wiped by bfs_aws_profile_free. */
struct bfs_aws_keys {
	char *access_key, *secret_key, *session_token;
};
/* One profile as found in ${AWS_CONFIG_FILE:-~/.aws/config} and
 * ${AWS_SHARED_CREDENTIALS_FILE:-~/.aws/credentials}. Owner: the caller; strings malloc'd. */
struct bfs_aws_profile {
	char *config_path, *credentials_path; /* NULL without $HOME and the variable */
	bool in_config, in_credentials;       /* the profile's section exists there */
	char *region;                         /* config: region */
	char *endpoint_url;                   /* config: endpoint_url (all services) */
	char *s3_endpoint_url;                /* config: [services X] s3 = endpoint_url, else the
					       * profile's own nested s3 = endpoint_url */
	bool path_style;                      /* config: s3 = addressing_style = path */
	bool ignore_endpoints;                /* config: ignore_configured_endpoint_urls = true */
	struct bfs_aws_keys config_keys;      /* aws_access_key_id... in the config file */
	struct bfs_aws_keys file_keys;        /* ... in the credentials file */
	char *config_process, *file_process;  /* credential_process in either file */
};
/* Loads profile name from the config file and, when with_credentials, from the credentials
 * file. Missing files are not an error (the in_* flags say what was found). A credentials file
 * group/other may access, a config file holding secrets that group/other may access or one
 * with a credential_process that group/other may write: -EACCES with a message in err. */
int bfs_aws_profile_load(const char *name, bool with_credentials, struct bfs_aws_profile *out,
			 char *err, size_t errlen);
void bfs_aws_profile_free(struct bfs_aws_profile *p);

/* fs/cred_json.c: the JSON of credential_process (BFS_CRED_JSON_PROCESS: Version 1,
 * AccessKeyId, SecretAccessKey, optional SessionToken and Expiration) and of EC2 instance
 * metadata (BFS_CRED_JSON_IMDS: Code Success if present, AccessKeyId, SecretAccessKey, Token,
 * Expiration). Fills out (owned by the caller: s3_creds_free); 0, or -EINVAL with the reason
 * in err (field names, never values), -ENOMEM. */
enum bfs_cred_json { BFS_CRED_JSON_PROCESS, BFS_CRED_JSON_IMDS };
int bfs_cred_json_parse(const char *text, size_t len, enum bfs_cred_json kind,
			struct s3_creds *out, char *err, size_t errlen);
/* "2026-12-02T06:30:00Z", with optional fraction, "Z" or "+HH:MM"/"-HHMM". 0 or -EINVAL. */
int bfs_iso8601_parse(const char *s, time_t *out);

/* fs/cred_process.c: credential_process. The command is split into words the way the AWS CLI
 * does (a POSIX shell's quoting: '...', "..." with \" and \\, \ outside quotes; no
 * expansion, no shell) and run with the environment, stdin /dev/null and no other open files,
 * for at most BFS_CRED_PROCESS_TIMEOUT_S seconds. */
#define BFS_CRED_PROCESS_TIMEOUT_S 60
/* argv (NULL-terminated, malloc'd: bfs_cmd_free) of cmd. -EINVAL for an unterminated quote,
 * a trailing backslash or no words. */
int bfs_cmd_split(const char *cmd, char ***argv);
void bfs_cmd_free(char **argv);
/* Runs cmd and parses what it prints. 0 and out filled (owned by the caller), or -errno with
 * a one-line reason in err (exit status and the first line of its stderr, or the JSON
 * problem). Thread-safe. */
int bfs_cred_process_run(const char *cmd, struct s3_creds *out, char *err, size_t errlen);

/* fs/imds.c: the EC2 instance role's keys from the instance metadata service at endpoint
 * ("http://169.254.169.254"), IMDSv2 (a session token first). 1 s to connect, 3 s per request.
 * 0 and out filled (owned by the caller), or -errno with a one-line reason in err. */
int bfs_imds_fetch(const char *endpoint, struct s3_creds *out, char *err, size_t errlen);
#define BFS_IMDS_DEFAULT "http://169.254.169.254"
/* ==== end of credential sources ==== */

#endif
