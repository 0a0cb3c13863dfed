/* fs/stream_upload.c — streaming multipart writes (docs/streaming.md).
 *
 * A file written sequentially from offset 0 with close-to-open starts a multipart upload
 * once it passes part_size. The upload goes to a private key, PREFIX.bucketfs/streams/<random>;
 * a pool of stream_budget workers sends each part once the writer has moved past it, read
 * from a dup of the staging file (pread), its bytes fed in order to the block digester on
 * the way. The close (do_upload in fs/upload.c) sends the rest, seals the digests, completes
 * the upload, copies the object to its real key with its final metadata in one CopyObject,
 * and deletes the private key: the real key goes from the old version to the new one, whole
 * and signed, in one step, so another mount never sees the new bytes with wrong metadata.
 *
 * A write into a part already handed to a sender, a truncate below the parts made ready, an
 * O_TRUNC reopen, an unlink, or any failure cancels the stream: its upload is aborted once
 * no part of it is in flight, and the close uploads the file whole, as without streaming.
 * The journal entry stays until the object is at its key (do_upload removes it).
 *
 * Locking: fs->stream_lock protects the fields marked below of every stream and the list
 * fs->streams. It is the innermost lock (taken under ino->lock or fs->lock, never the
 * reverse) and never held across S3 requests or file I/O. ino->stream: ino->lock. */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "fs/fs_int.h"
#include "util/util.h"

#define MAX_PARTS 10000
#define TIER_PARTS 1000           /* parts of one size before the size doubles */
#define MAX_TIER 9
#define MAX_PART (5ull << 30)      /* S3's largest part */
#define NO_SIZE UINT64_MAX

struct bfs_stream {
	/* immutable after stream_new */
	struct bfs_fs *fs;
	int fd;                   /* dup of the staging file; owned */
	char *tmp_key;            /* where the parts go; owned */
	uint64_t base;            /* size of the first TIER_PARTS parts (part_size) */
	struct bfs_digester *dg;  /* fed by the sender whose part is `hashed`, without locks */

	/* ---- fs->stream_lock ---- */
	struct s3_multipart *mp;  /* NULL until part 1's sender created the upload */
	uint64_t hi;              /* furthest end the writer reached */
	uint64_t final;           /* the object's size once finishing, else NO_SIZE */
	size_t ready;             /* parts 0..ready-1 may be sent */
	size_t claimed;           /* parts handed to senders: 0..claimed-1 never change again */
	size_t hashed;            /* parts fed to dg, in order */
	size_t done;              /* parts sent */
	int inflight;             /* senders working on a part of it */
	int err;                  /* first failure, -ECANCELED once detached: nothing more sent */
	bool detached;            /* its inode let go: a worker aborts it once idle */
	bool finishing;           /* bfs_stream_take'n: its closer frees it */
	struct bfs_stream *next;  /* fs->streams */
};

/* ---- part layout: TIER_PARTS parts of base, then of 2*base, 4*base, ... 256*base, and
 * the last TIER_PARTS of 5 GiB (every part at most 5 GiB), so 10,000 parts cover S3's
 * largest object (5 TiB) from the 5M minimum, whatever the final size, which a stream does
 * not know when it begins; files up to 1000 parts keep part_size ---- */

uint64_t bfs_stream_part_len(uint64_t base, size_t i)
{
	size_t t = i / TIER_PARTS;
	uint64_t l = t < MAX_TIER ? base << t : MAX_PART;
	return l > MAX_PART ? MAX_PART : l;
}

uint64_t bfs_stream_part_off(uint64_t base, size_t i)
{
	uint64_t off = 0;
	size_t j = 0;
	for (; j + TIER_PARTS <= i; j += TIER_PARTS)
		off += bfs_stream_part_len(base, j) * TIER_PARTS;
	return off + (uint64_t)(i - j) * bfs_stream_part_len(base, j);
}

size_t bfs_stream_parts_for(uint64_t base, uint64_t size)
{
	size_t i = 0;
	uint64_t off = 0;
	while (i < MAX_PARTS && off < size) {
		uint64_t tier = bfs_stream_part_len(base, i) * TIER_PARTS;
		if (size - off > tier) {
			off += tier;
			i += TIER_PARTS;
			continue;
		}
		uint64_t l = bfs_stream_part_len(base, i);
		return i + (size_t)((size - off + l - 1) / l);
	}
	return off < size ? MAX_PARTS + 1 : i;
}

/* ---- state changes (fs->stream_lock held) ---- */

static void fail_locked(struct bfs_stream *s, int rc)
{
	if (!s->err)
		s->err = rc;
	pthread_cond_broadcast(&s->fs->stream_cond);
}

/* Parts entirely behind the writer become ready (never the last one S3 allows: that is
 * kept for the tail). */
static void advance_locked(struct bfs_stream *s)
{
	size_t before = s->ready;
	while (s->ready + 1 < MAX_PARTS && bfs_stream_part_off(s->base, s->ready + 1) < s->hi)
		s->ready++;
	if (s->ready != before)
		pthread_cond_broadcast(&s->fs->stream_cond);
}

static void detach_locked(struct bfs_stream *s)
{
	s->detached = true;
	fail_locked(s, -ECANCELED);
}

static bool sendable(const struct bfs_stream *s)
{
	return !s->err && s->claimed < s->ready;
}

/* Hands the next part of s to the caller: its index, offset and length. */
static void claim_locked(struct bfs_stream *s, size_t *i, uint64_t *off, uint64_t *len)
{
	*i = s->claimed++;
	*off = bfs_stream_part_off(s->base, *i);
	*len = bfs_stream_part_len(s->base, *i);
	if (s->final != NO_SIZE && *off + *len > s->final)
		*len = s->final - *off;
	s->inflight++;
}

static void unlink_locked(struct bfs_fs *fs, struct bfs_stream *s)
{
	for (struct bfs_stream **pp = &fs->streams; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	pthread_cond_broadcast(&fs->stream_cond);
}

static void stream_free(struct bfs_stream *s)
{
	if (s->fd >= 0)
		close(s->fd);
	bfs_digester_free(s->dg);
	s3_multipart_free(s->mp);
	free(s->tmp_key);
	free(s);
}

/* Aborts s's upload (if it began) and frees it; no lock held, s on no list. */
static void stream_discard(struct bfs_stream *s)
{
	if (s->mp && s3_multipart_cancel(s->mp))
		bfs_log(BFS_LOG_WARN, "%s: cannot abort streamed upload %s (bucketfs-fsck "
			"--abort-uploads removes it): %s", s->tmp_key, s3_multipart_id(s->mp),
			s3_last_error());
	stream_free(s);
}

/* ---- sending one part ---- */

struct tap_ctx {
	struct bfs_stream *s;
	size_t part;
	uint64_t len, fed;
	int err;
};

/* The part's bytes as s3 reads them to hash them: into the digester, then the turn passes
 * to the next part. */
static void tap(void *arg, const void *buf, size_t n)
{
	struct tap_ctx *t = arg;
	if (!t->err)
		t->err = bfs_digester_update(t->s->dg, buf, n);
	t->fed += n;
	if (t->fed == t->len) {
		struct bfs_fs *fs = t->s->fs;
		pthread_mutex_lock(&fs->stream_lock);
		if (t->err)
			fail_locked(t->s, t->err);
		else
			t->s->hashed = t->part + 1;
		pthread_cond_broadcast(&fs->stream_cond);
		pthread_mutex_unlock(&fs->stream_lock);
	}
}

/* Sends part i (claimed; s->inflight counts it) without locks; the caller uncounts it. */
static void send_part(struct bfs_stream *s, size_t i, uint64_t off, uint64_t len)
{
	struct bfs_fs *fs = s->fs;
	int rc = 0;
	if (i == 0) {
		struct s3_multipart *mp = NULL;
		rc = s3_multipart_begin(fs->s3, s->tmp_key, NULL, "application/octet-stream", &mp);
		pthread_mutex_lock(&fs->stream_lock);
		if (rc == 0)
			s->mp = mp;
		else
			fail_locked(s, rc);
		pthread_cond_broadcast(&fs->stream_cond);
		pthread_mutex_unlock(&fs->stream_lock);
		if (rc)
			goto out;
	}
	/* bytes go through the digester in order: wait for the part before this one */
	pthread_mutex_lock(&fs->stream_lock);
	while (s->hashed != i && !s->err)
		pthread_cond_wait(&fs->stream_cond, &fs->stream_lock);
	struct s3_multipart *mp = s->mp;
	rc = s->err;
	pthread_mutex_unlock(&fs->stream_lock);
	if (rc)
		return; /* failed or cancelled: said where it happened */
	struct tap_ctx t = { s, i, len, 0, 0 };
	rc = s3_multipart_part(mp, i + 1, s->fd, off, len, tap, &t);
	if (rc == 0 && t.err)
		rc = t.err;
	pthread_mutex_lock(&fs->stream_lock);
	if (rc)
		fail_locked(s, rc);
	else
		s->done++;
	pthread_cond_broadcast(&fs->stream_cond);
	pthread_mutex_unlock(&fs->stream_lock);
	if (rc == 0)
		atomic_fetch_add(&fs->streamed_parts, 1);
out:
	if (rc && rc != -ECANCELED)
		bfs_log(BFS_LOG_WARN, "%s: streaming part %zu failed (%s); the file is uploaded "
			"whole at close: %s", s->tmp_key, i + 1, strerror(-rc), s3_last_error());
}

/* Claims and sends parts of s while there are some (fs->stream_lock held; released around
 * each part). */
static void send_ready_locked(struct bfs_stream *s)
{
	struct bfs_fs *fs = s->fs;
	while (sendable(s)) {
		size_t i;
		uint64_t off, len;
		claim_locked(s, &i, &off, &len);
		pthread_mutex_unlock(&fs->stream_lock);
		send_part(s, i, off, len);
		pthread_mutex_lock(&fs->stream_lock);
		s->inflight--;
		pthread_cond_broadcast(&fs->stream_cond);
	}
}

static void *worker(void *arg)
{
	struct bfs_fs *fs = arg;
	pthread_mutex_lock(&fs->stream_lock);
	for (;;) {
		struct bfs_stream *pick = NULL;
		bool drop = false;
		for (struct bfs_stream *s = fs->streams; s && !drop; s = s->next) {
			if (s->detached && !s->finishing && s->inflight == 0) {
				pick = s;
				drop = true;
			} else if (!pick && sendable(s)) {
				pick = s;
			}
		}
		if (!pick) {
			if (fs->stream_stopping && !fs->streams)
				break;
			pthread_cond_wait(&fs->stream_cond, &fs->stream_lock);
			continue;
		}
		if (drop) {
			unlink_locked(fs, pick);
			pthread_mutex_unlock(&fs->stream_lock);
			stream_discard(pick);
			pthread_mutex_lock(&fs->stream_lock);
			continue;
		}
		/* one part at a time, so that other streams get their turn */
		size_t i;
		uint64_t off, len;
		claim_locked(pick, &i, &off, &len);
		pthread_mutex_unlock(&fs->stream_lock);
		send_part(pick, i, off, len);
		pthread_mutex_lock(&fs->stream_lock);
		pick->inflight--;
		pthread_cond_broadcast(&fs->stream_cond);
		/* to the end of the list: the next worker serves the next stream */
		if (fs->streams == pick && pick->next) {
			struct bfs_stream **pp = &fs->streams;
			*pp = pick->next;
			while (*pp)
				pp = &(*pp)->next;
			*pp = pick;
			pick->next = NULL;
		}
	}
	pthread_mutex_unlock(&fs->stream_lock);
	return NULL;
}

/* ---- the inode's side ---- */

static struct bfs_stream *stream_new(struct bfs_fs *fs, struct bfs_inode *ino)
{
	struct bfs_stream *s = calloc(1, sizeof(*s));
	unsigned char rnd[16];
	char hex[33];
	if (!s)
		return NULL;
	s->fs = fs;
	s->fd = dup(ino->stage_fd);
	s->base = fs->opts->part_size ? fs->opts->part_size : (8u << 20);
	s->final = NO_SIZE;
	if (s->fd < 0 || RAND_bytes(rnd, sizeof(rnd)) != 1 || bfs_digester_new(&s->dg))
		goto fail;
	bfs_hex(rnd, sizeof(rnd), hex);
	if (asprintf(&s->tmp_key, "%s" BFS_STREAM_DIR "%s", fs->opts->prefix, hex) < 0) {
		s->tmp_key = NULL;
		goto fail;
	}
	return s;
fail:
	stream_free(s);
	return NULL;
}

void bfs_stream_note_write(struct bfs_fs *fs, struct bfs_inode *ino, uint64_t off, uint64_t n,
			   uint64_t size_before)
{
	uint64_t end = off + n;
	if (off == 0 && size_before == 0)
		ino->seq_ok = true; /* an empty file written from the start */
	else if (off != ino->seq_end)
		ino->seq_ok = false;
	ino->seq_end = end;
	struct bfs_stream *s = ino->stream;
	if (s) {
		pthread_mutex_lock(&fs->stream_lock);
		bool into_sent = off < bfs_stream_part_off(s->base, s->claimed);
		if (into_sent) {
			detach_locked(s);
		} else if (end > s->hi) {
			s->hi = end;
			advance_locked(s);
		}
		pthread_mutex_unlock(&fs->stream_lock);
		if (into_sent) {
			ino->stream = NULL;
			ino->seq_ok = false;
			bfs_log(BFS_LOG_INFO, "%s: write at %" PRIu64 " into a part already "
				"streamed: the stream is cancelled, the file is uploaded whole at "
				"close", s->tmp_key, off);
		}
		return;
	}
	uint64_t base = fs->opts->part_size ? fs->opts->part_size : (8u << 20);
	if (!ino->seq_ok || end <= base || fs->nstream_workers == 0 || !bfs_sync_changes(fs) ||
	    ino->link_key || !S_ISREG(ino->st.st_mode) || ino->stage_fd < 0 || ino->attr_only)
		return;
	pthread_mutex_lock(&fs->stream_lock);
	bool stopping = fs->stream_stopping;
	pthread_mutex_unlock(&fs->stream_lock);
	if (stopping)
		return;
	s = stream_new(fs, ino);
	if (!s) {
		ino->seq_ok = false; /* not again for every write */
		bfs_log(BFS_LOG_WARN, "cannot start a streamed upload: %s", strerror(ENOMEM));
		return;
	}
	pthread_mutex_lock(&fs->stream_lock);
	s->hi = end;
	s->next = fs->streams;
	fs->streams = s;
	advance_locked(s);
	pthread_mutex_unlock(&fs->stream_lock);
	ino->stream = s;
	bfs_log(BFS_LOG_DEBUG, "streaming the upload of inode %llu through %s",
		(unsigned long long)ino->nodeid, s->tmp_key);
}

void bfs_stream_note_truncate(struct bfs_fs *fs, struct bfs_inode *ino, uint64_t size)
{
	if (size < ino->seq_end)
		ino->seq_end = size;
	struct bfs_stream *s = ino->stream;
	if (!s)
		return;
	pthread_mutex_lock(&fs->stream_lock);
	bool below = size < bfs_stream_part_off(s->base, s->ready);
	if (below)
		detach_locked(s);
	else if (s->hi > size)
		s->hi = size;
	pthread_mutex_unlock(&fs->stream_lock);
	if (below) {
		ino->stream = NULL;
		bfs_log(BFS_LOG_INFO, "%s: truncated below the streamed parts: the stream is "
			"cancelled, the file is uploaded whole at close", s->tmp_key);
	}
}

void bfs_stream_cancel(struct bfs_fs *fs, struct bfs_inode *ino)
{
	struct bfs_stream *s = ino->stream;
	if (!s)
		return;
	ino->stream = NULL;
	pthread_mutex_lock(&fs->stream_lock);
	detach_locked(s);
	pthread_mutex_unlock(&fs->stream_lock);
}

void bfs_stream_detach(struct bfs_stream *s)
{
	pthread_mutex_lock(&s->fs->stream_lock);
	detach_locked(s);
	pthread_mutex_unlock(&s->fs->stream_lock);
}

struct bfs_stream *bfs_stream_take(struct bfs_inode *ino)
{
	struct bfs_stream *s = ino->stream;
	if (!s)
		return NULL;
	ino->stream = NULL;
	pthread_mutex_lock(&s->fs->stream_lock);
	s->finishing = true;
	pthread_mutex_unlock(&s->fs->stream_lock);
	return s;
}

void bfs_stream_drop(struct bfs_stream *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->fs->stream_lock);
	s->finishing = false;
	detach_locked(s); /* a worker aborts it once idle */
	pthread_mutex_unlock(&s->fs->stream_lock);
}

/* ---- the close ---- */

static void *helper(void *arg)
{
	struct bfs_stream *s = arg;
	pthread_mutex_lock(&s->fs->stream_lock);
	send_ready_locked(s);
	pthread_mutex_unlock(&s->fs->stream_lock);
	return NULL;
}

int bfs_stream_finish(struct bfs_stream *s, const char *key, uint64_t size,
		      const char *content_type, struct s3_meta *m, struct s3_object *out)
{
	struct bfs_fs *fs = s->fs;
	size_t n = bfs_stream_parts_for(s->base, size);
	pthread_t *helpers = NULL;
	size_t nhelpers = 0;
	bool completed = false;
	struct s3_object done;
	s3_object_init(&done);

	pthread_mutex_lock(&fs->stream_lock);
	int rc = s->err;
	/* what was handed out must lie within the object; a small one is one PUT */
	if (rc == 0 && (size <= s->base || n > MAX_PARTS || n < s->claimed ||
			bfs_stream_part_off(s->base, s->claimed) > size))
		rc = -ECANCELED;
	if (rc == 0) {
		s->final = size;
		s->ready = n;
		pthread_cond_broadcast(&fs->stream_cond);
	} else {
		fail_locked(s, rc);
	}
	/* the rest goes at close-time parallelism: helpers besides the pool's workers */
	size_t left = rc ? 0 : n - s->claimed;
	size_t most = (size_t)fs->opts->max_connections;
	size_t want = left < most ? left : most;
	pthread_mutex_unlock(&fs->stream_lock);
	if (want > 1 && (helpers = calloc(want - 1, sizeof(*helpers))))
		for (size_t k = 0; k + 1 < want; k++)
			if (pthread_create(&helpers[nhelpers], NULL, helper, s) == 0)
				nhelpers++;
	pthread_mutex_lock(&fs->stream_lock);
	for (;;) {
		send_ready_locked(s);
		if (s->inflight == 0 && (s->err || s->done == s->ready))
			break;
		pthread_cond_wait(&fs->stream_cond, &fs->stream_lock);
	}
	rc = s->err;
	pthread_mutex_unlock(&fs->stream_lock);
	for (size_t k = 0; k < nhelpers; k++)
		pthread_join(helpers[k], NULL);
	free(helpers);

	/* every part is in S3 and went through the digester: seal, complete, copy */
	if (rc == 0)
		rc = bfs_integrity_seal_digester(fs->s3, fs->opts, key, s->dg, size, m);
	if (rc == 0) {
		rc = s3_multipart_complete(s->mp, n, &done);
		completed = rc == 0;
	}
	if (rc == 0 && done.size != size) {
		bfs_log(BFS_LOG_ERR, "%s: completed upload holds %" PRIu64 " bytes, expected %"
			PRIu64, s->tmp_key, done.size, size);
		rc = -EIO;
	}
	if (rc == 0)
		rc = s3_copy(fs->s3, s->tmp_key, key, m, content_type,
			     done.etag[0] ? done.etag : NULL, out);
	if (rc && rc != -ECANCELED)
		bfs_log(BFS_LOG_WARN, "%s: streamed upload failed (%s); uploading it whole: %s",
			key, strerror(-rc), s3_last_error());
	if (completed) {
		int drc = s3_delete(fs->s3, s->tmp_key);
		if (drc)
			bfs_log(BFS_LOG_WARN, "%s: cannot delete the streamed upload's object (an "
				"orphan for bucketfs-fsck): %s", s->tmp_key, s3_last_error());
		s3_multipart_free(s->mp);
		s->mp = NULL;
	}
	s3_object_free(&done);
	pthread_mutex_lock(&fs->stream_lock);
	unlink_locked(fs, s);
	pthread_mutex_unlock(&fs->stream_lock);
	if (completed)
		stream_free(s);
	else
		stream_discard(s); /* aborts the unfinished upload */
	return rc;
}

/* ---- the pool ---- */

int bfs_stream_start(struct bfs_fs *fs)
{
	int n = (int)fs->opts->stream_budget;
	if (n <= 0)
		return 0;
	fs->stream_workers = calloc((size_t)n, sizeof(*fs->stream_workers));
	if (!fs->stream_workers)
		return -ENOMEM;
	for (int i = 0; i < n; i++) {
		int rc = pthread_create(&fs->stream_workers[i], NULL, worker, fs);
		if (rc)
			return -rc; /* the ones started serve; nstream_workers says how many */
		fs->nstream_workers = i + 1;
	}
	return 0;
}

static bool has_stream(const struct bfs_inode *ino)
{
	return __atomic_load_n(&ino->stream, __ATOMIC_RELAXED) != NULL;
}

void bfs_stream_stop(struct bfs_fs *fs)
{
	/* streams whose inodes were never uploaded (removed, or never closed): aborted */
	size_t n = 0;
	struct bfs_inode **inos = bfs_inode_pin_matching(fs, has_stream, &n);
	for (size_t i = 0; i < n; i++) {
		pthread_mutex_lock(&inos[i]->lock);
		bfs_stream_cancel(fs, inos[i]);
		pthread_mutex_unlock(&inos[i]->lock);
		bfs_inode_unpin(fs, inos[i]);
	}
	free(inos);
	pthread_mutex_lock(&fs->stream_lock);
	fs->stream_stopping = true;
	pthread_cond_broadcast(&fs->stream_cond);
	pthread_mutex_unlock(&fs->stream_lock);
	for (int i = 0; i < fs->nstream_workers; i++)
		pthread_join(fs->stream_workers[i], NULL);
	free(fs->stream_workers);
	fs->stream_workers = NULL;
	fs->nstream_workers = 0;
}
