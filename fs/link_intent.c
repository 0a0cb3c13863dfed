/* fs/link_intent.c — crash safety of hard-link changes (docs/hardlinks.md).
 *
 * Adding or removing a name of a hard-linked file takes several S3 requests: the content
 * object's link count (bfs-nlink) changes, and a name object is written or deleted. The
 * order keeps the count at or above the number of names (increment before a name appears,
 * decrement after it went), so a crash never lets a later unlink delete content that a name
 * still shows. What a crash can leave is a count that is too high (the content is never
 * freed) or, when the first link of a file dies half-way, a content object no name uses.
 *
 * So before such a change the journal gets an intent record: the content key, its count
 * before the change, and the names the change adds and removes. It is dropped when the
 * change is complete. Recovery at the next mount (after the journal's data entries, which
 * may replace a name) counts which of those names now point to the content and sets the
 * count to match, or deletes the content when no name is left. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs_int.h"
#include "util/util.h"

#define MAGIC "bfsL1"

static const char *const ADD_TAGS[BFS_INTENT_MAX] = { "a1", "a2" };
static const char *const REM_TAGS[BFS_INTENT_MAX] = { "r1", "r2" };

bool bfs_link_intent_is(const char *rec)
{
	return rec && strncmp(rec, MAGIC "\n", sizeof(MAGIC)) == 0;
}

/* The link count content key lk holds now: 0 if it does not exist (yet). */
static int current_count(struct bfs_fs *fs, const char *lk, long *n)
{
	struct s3_object o;
	int rc = s3_head(fs->s3, lk, &o);
	if (rc == -ENOENT) {
		*n = 0;
		return 0;
	}
	if (rc)
		return rc;
	const char *nl = s3_meta_get(&o.meta, BFS_NLINK_META);
	*n = nl ? strtol(nl, NULL, 10) : 1;
	s3_object_free(&o);
	return 0;
}

int bfs_link_intent_begin(struct bfs_fs *fs, const struct bfs_link_change *ch, uint64_t *id)
{
	*id = 0;
	long before = 0;
	int rc = ch->is_new ? 0 : current_count(fs, ch->link_key, &before);
	if (rc)
		return rc;
	char nbuf[24];
	snprintf(nbuf, sizeof(nbuf), "%ld", before);
	struct bfs_field f[2 + 2 * BFS_INTENT_MAX] = { { "l", ch->link_key }, { "n", nbuf } };
	size_t nf = 2;
	for (int i = 0; i < BFS_INTENT_MAX; i++) {
		f[nf++] = (struct bfs_field){ ADD_TAGS[i], ch->adds[i] };
		f[nf++] = (struct bfs_field){ REM_TAGS[i], ch->removes[i] };
	}
	char *rec = bfs_record_encode(MAGIC, f, nf, NULL);
	if (!rec)
		return -ENOMEM;
	int fd = -1;
	uint64_t jid;
	rc = cache_dirty_create(fs->cache, &jid, &fd);
	if (rc == 0) {
		close(fd);
		struct cache_dirty d = { .id = jid, .key = (char *)ch->link_key, .meta = rec };
		rc = cache_dirty_commit(fs->cache, &d);
		if (rc)
			cache_dirty_remove(fs->cache, jid);
		else
			*id = jid;
	}
	free(rec);
	if (rc)
		bfs_log(BFS_LOG_ERR, "%s: cannot journal a hard-link change: %s", ch->link_key,
			strerror(-rc));
	return rc;
}

void bfs_link_intent_end(struct bfs_fs *fs, uint64_t id)
{
	if (id)
		cache_dirty_remove(fs->cache, id);
}

/* Whether the object at name is a name of content lk. 0/1, or -errno (not known). */
static int points_to(struct bfs_fs *fs, const char *name, const char *lk)
{
	struct s3_object o;
	int rc = s3_head(fs->s3, name, &o);
	if (rc == -ENOENT)
		return 0;
	if (rc)
		return rc;
	const char *v = s3_meta_get(&o.meta, BFS_LINK_META);
	rc = v && strcmp(v, lk) == 0;
	s3_object_free(&o);
	return rc;
}

int bfs_link_intent_recover(struct bfs_fs *fs, const struct cache_dirty *d)
{
	struct bfs_field f[2 + 2 * BFS_INTENT_MAX] = { { "l", NULL }, { "n", NULL } };
	size_t nf = 2;
	for (int i = 0; i < BFS_INTENT_MAX; i++) {
		f[nf++] = (struct bfs_field){ ADD_TAGS[i], NULL };
		f[nf++] = (struct bfs_field){ REM_TAGS[i], NULL };
	}
	struct s3_meta unused;
	int rc = bfs_record_decode(d->meta, strlen(d->meta), MAGIC, f, nf, &unused);
	if (rc)
		return rc;
	s3_meta_free(&unused);
	const char *lk = f[0].value;
	if (!lk || !f[1].value) {
		rc = -EINVAL;
		goto out;
	}
	long want = strtol(f[1].value, NULL, 10), have;
	for (size_t i = 2; i < nf && rc == 0; i++) {
		if (!f[i].value)
			continue;
		int p = points_to(fs, f[i].value, lk);
		if (p < 0)
			rc = p;
		else if (f[i].tag[0] == 'a')
			want += p;          /* a name the change added, if it got there */
		else
			want -= !p;         /* a name it removed, if it is gone */
	}
	if (rc == 0)
		rc = current_count(fs, lk, &have);
	if (rc)
		goto out;
	if (have == 0) {
		/* gone with its last name; nothing to settle */
	} else if (want <= 0) {
		rc = s3_delete(fs->s3, lk);
		if (rc == 0)
			bfs_log(BFS_LOG_INFO, "%s: removed the content of an interrupted hard-link "
				"change that no name uses", lk);
	} else if (want != have) {
		rc = bfs_link_set_nlink(fs, lk, want - have, NULL);
		if (rc >= 0) {
			rc = 0;
			bfs_log(BFS_LOG_INFO, "%s: link count %ld -> %ld after an interrupted "
				"hard-link change", lk, have, want);
		}
	}
out:
	if (rc)
		bfs_log(BFS_LOG_ERR, "%s: cannot settle an interrupted hard-link change (%s); "
			"kept in the journal", lk ? lk : "?", strerror(-rc));
	else
		rc = cache_dirty_remove(fs->cache, d->id);
	bfs_record_fields_free(f, nf);
	return rc;
}
