/* s3/creds.c — the keys requests are signed with, and their refresh from a provider.
 *
 * The keys in use are an immutable, reference-counted struct s3_cred_set: a request takes a
 * reference (creds_lock, held for a pointer copy), signs, and drops it. When they are due
 * (min(5 min, half their lifetime) before they expire), the first thread to see it takes
 * refresh_lock and asks creds_fn; the others go on with the current keys, or wait for that
 * thread if the keys have already expired. New keys replace the old ones with one pointer swap.
 * A failed refresh is logged and retried no sooner than RETRY_S later; the old keys stay in
 * use meanwhile. Secrets are wiped when the last reference goes and never logged. */
#include "s3/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define REFRESH_MARGIN_S 300 /* refresh this long before expiry (or at half-life if shorter) */
#define RETRY_S 5            /* after a failed refresh, the next attempt */

static void wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

void s3_creds_free(struct s3_creds *c)
{
	if (!c)
		return;
	wipe_free(c->access_key);
	wipe_free(c->secret_key);
	wipe_free(c->session_token);
	memset(c, 0, sizeof(*c));
}

time_t s3_creds_refresh_at(time_t now, time_t expiration)
{
	if (!expiration)
		return 0;
	time_t margin = (expiration - now) / 2;
	if (margin > REFRESH_MARGIN_S)
		margin = REFRESH_MARGIN_S;
	if (margin < 0)
		margin = 0;
	return expiration - margin;
}

static void set_free(struct s3_cred_set *cs)
{
	wipe_free(cs->access_key);
	wipe_free(cs->secret_key);
	wipe_free(cs->session_token);
	free(cs);
}

void s3_creds_put(struct s3_cred_set *cs)
{
	if (cs && atomic_fetch_sub(&cs->refs, 1) == 1)
		set_free(cs);
}

/* A new set (one reference) with copies of the keys. -EINVAL for empty keys or CR/LF (they
 * go into headers), -ENOMEM. */
static int set_new(const char *key, const char *secret, const char *token, time_t expiration,
		   time_t now, struct s3_cred_set **out)
{
	*out = NULL;
	if (!key || !*key || !secret || !*secret || strpbrk(key, "\r\n/, ") ||
	    strpbrk(secret, "\r\n") || (token && strpbrk(token, "\r\n")))
		return -EINVAL;
	struct s3_cred_set *cs = calloc(1, sizeof(*cs));
	if (!cs)
		return -ENOMEM;
	atomic_init(&cs->refs, 1);
	cs->access_key = strdup(key);
	cs->secret_key = strdup(secret);
	cs->session_token = token && *token ? strdup(token) : NULL;
	if (!cs->access_key || !cs->secret_key || (token && *token && !cs->session_token)) {
		set_free(cs);
		return -ENOMEM;
	}
	cs->expiration = expiration;
	cs->refresh_at = s3_creds_refresh_at(now, expiration);
	*out = cs;
	return 0;
}

int s3_creds_init(struct s3_client *c, const struct s3_config *cfg)
{
	pthread_mutex_init(&c->creds_lock, NULL);
	pthread_mutex_init(&c->refresh_lock, NULL);
	c->creds_lock_ready = true;
	atomic_init(&c->creds_next_try, 0);
	atomic_init(&c->creds_last_try, 0);
	c->creds_fn = cfg->creds_fn;
	c->creds_arg = cfg->creds_arg;
	return set_new(cfg->access_key, cfg->secret_key, cfg->session_token,
		       cfg->creds_expiration, time(NULL), &c->creds);
}

void s3_creds_destroy(struct s3_client *c)
{
	s3_creds_put(c->creds);
	c->creds = NULL;
	pthread_mutex_destroy(&c->creds_lock);
	pthread_mutex_destroy(&c->refresh_lock);
}

static struct s3_cred_set *take(struct s3_client *c)
{
	pthread_mutex_lock(&c->creds_lock);
	struct s3_cred_set *cs = c->creds;
	atomic_fetch_add(&cs->refs, 1);
	pthread_mutex_unlock(&c->creds_lock);
	return cs;
}

static bool is_current(struct s3_client *c, const struct s3_cred_set *cs)
{
	pthread_mutex_lock(&c->creds_lock);
	bool same = c->creds == cs;
	pthread_mutex_unlock(&c->creds_lock);
	return same;
}

/* Asks creds_fn and publishes what it gives. Caller holds refresh_lock. */
static int refresh(struct s3_client *c, time_t now, const char *why)
{
	struct s3_creds n = { 0 };
	struct s3_cred_set *cs = NULL;
	char err[512] = "";
	atomic_store(&c->creds_last_try, (long long)now);
	int rc = c->creds_fn(c->creds_arg, &n, err, sizeof(err));
	if (rc == 0) {
		rc = set_new(n.access_key, n.secret_key, n.session_token, n.expiration, now, &cs);
		if (rc == -EINVAL)
			snprintf(err, sizeof(err), "the provider gave an empty or malformed key");
	}
	s3_creds_free(&n);
	if (rc) {
		atomic_store(&c->creds_next_try, (long long)(now + RETRY_S));
		bfs_log(BFS_LOG_WARN, "s3: cannot refresh the credentials (%s): %s; still using "
			"the current ones", why, err[0] ? err : strerror(-rc));
		return rc;
	}
	pthread_mutex_lock(&c->creds_lock);
	struct s3_cred_set *old = c->creds;
	c->creds = cs;
	pthread_mutex_unlock(&c->creds_lock);
	s3_creds_put(old);
	atomic_store(&c->creds_next_try, 0);
	if (cs->expiration) {
		char when[32];
		struct tm tm;
		gmtime_r(&cs->expiration, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		bfs_log(BFS_LOG_INFO, "s3: new credentials (%s); they expire at %s", why, when);
	} else {
		bfs_log(BFS_LOG_INFO, "s3: new credentials (%s); they do not expire", why);
	}
	return 0;
}

struct s3_cred_set *s3_creds_get(struct s3_client *c, time_t now)
{
	struct s3_cred_set *cs = take(c);
	if (!c->creds_fn || !cs->refresh_at || now < cs->refresh_at ||
	    now < (time_t)atomic_load(&c->creds_next_try))
		return cs;
	bool expired = cs->expiration && now >= cs->expiration;
	if (expired)
		pthread_mutex_lock(&c->refresh_lock); /* nothing valid to go on with: wait */
	else if (pthread_mutex_trylock(&c->refresh_lock) != 0)
		return cs; /* another thread is refreshing; these keys still work */
	/* whoever held the lock may have refreshed already */
	if (is_current(c, cs) && now >= (time_t)atomic_load(&c->creds_next_try))
		refresh(c, now, expired ? "they expired" : "they expire soon");
	pthread_mutex_unlock(&c->refresh_lock);
	s3_creds_put(cs);
	return take(c);
}

bool s3_creds_rejected(struct s3_client *c, struct s3_cred_set *used, time_t now)
{
	if (!c->creds_fn)
		return false;
	pthread_mutex_lock(&c->refresh_lock);
	bool changed = !is_current(c, used);
	/* the provider was just asked: asking again is no use (and a refusal that is not about
	 * the keys, such as a HEAD of a forbidden object, must not run it on every request) */
	bool recent = now < (time_t)atomic_load(&c->creds_last_try) + RETRY_S;
	if (!changed && !recent)
		changed = refresh(c, now, "S3 refused the current ones") == 0 &&
			  !is_current(c, used);
	pthread_mutex_unlock(&c->refresh_lock);
	return changed;
}
