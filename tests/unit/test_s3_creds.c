/* tests/unit/test_s3_creds.c — s3/creds.c: when keys are refreshed, what happens when the
 * provider fails, and that threads do not wait for a refresh while the keys still work. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "s3/internal.h"
#include "util/util.h"

/* A scripted provider: hands out KEY<n>, fails while fail is set, sleeps delay_ms. */
struct provider {
	pthread_mutex_t lock;
	int calls, inside, max_inside;
	bool fail;
	int delay_ms;
	time_t expiration; /* of what it hands out */
};

static int provide(void *arg, struct s3_creds *out, char *err, size_t errlen)
{
	struct provider *p = arg;
	pthread_mutex_lock(&p->lock);
	int n = ++p->calls;
	if (++p->inside > p->max_inside)
		p->max_inside = p->inside;
	pthread_mutex_unlock(&p->lock);
	if (p->delay_ms)
		usleep((useconds_t)p->delay_ms * 1000);
	int rc = 0;
	if (p->fail) {
		snprintf(err, errlen, "scripted failure %d", n);
		rc = -EIO;
	} else {
		char key[32];
		snprintf(key, sizeof(key), "KEY%d", n);
		out->access_key = strdup(key);
		out->secret_key = strdup("SECRET");
		out->session_token = strdup("TOKEN");
		out->expiration = p->expiration;
	}
	pthread_mutex_lock(&p->lock);
	p->inside--;
	pthread_mutex_unlock(&p->lock);
	return rc;
}

static struct s3_client *client(struct provider *p, time_t expiration)
{
	struct s3_client *c;
	struct s3_config cfg = { .endpoint = "http://127.0.0.1:1", .bucket = "b",
				 .access_key = "KEY0", .secret_key = "SECRET0",
				 .creds_expiration = expiration, .creds_fn = p ? provide : NULL,
				 .creds_arg = p };
	assert_int_equal(s3_client_new(&cfg, &c), 0);
	return c;
}

/* The key the client signs with at time now. */
static const char *key_at(struct s3_client *c, time_t now)
{
	static char key[32];
	struct s3_cred_set *cs = s3_creds_get(c, now);
	snprintf(key, sizeof(key), "%s", cs->access_key);
	s3_creds_put(cs);
	return key;
}

static void test_refresh_at(void **state)
{
	(void)state;
	assert_int_equal(s3_creds_refresh_at(1000, 0), 0);               /* never expire */
	assert_int_equal(s3_creds_refresh_at(1000, 1000 + 21600), 1000 + 21600 - 300);
	assert_int_equal(s3_creds_refresh_at(1000, 1000 + 600), 1000 + 300);
	assert_int_equal(s3_creds_refresh_at(1000, 1000 + 10), 1000 + 5); /* half-life */
	assert_int_equal(s3_creds_refresh_at(1000, 1000 + 1), 1000 + 1);
	assert_int_equal(s3_creds_refresh_at(1000, 990), 990);            /* already expired */
}

static void test_refresh_when_due(void **state)
{
	(void)state;
	struct provider p = { .lock = PTHREAD_MUTEX_INITIALIZER };
	time_t now = time(NULL);
	p.expiration = now + 3600;
	struct s3_client *c = client(&p, now + 10);

	assert_string_equal(key_at(c, now), "KEY0");
	assert_string_equal(key_at(c, now + 4), "KEY0");
	assert_int_equal(p.calls, 0);
	assert_string_equal(key_at(c, now + 5), "KEY1");  /* half of 10 s before expiry */
	assert_int_equal(p.calls, 1);
	assert_string_equal(key_at(c, now + 60), "KEY1"); /* the new ones are good for an hour */
	assert_int_equal(p.calls, 1);
	assert_string_equal(key_at(c, now + 3600 - 299), "KEY2");
	assert_int_equal(p.calls, 2);

	/* a key set held across the swap stays valid until released */
	struct s3_cred_set *held = s3_creds_get(c, now + 3600 - 298);
	p.expiration = now + 99999;
	assert_false(s3_creds_rejected(c, held, now + 3600 - 298)); /* asked 3 s ago */
	assert_true(s3_creds_rejected(c, held, now + 3600 - 290));
	assert_string_equal(held->access_key, "KEY2");
	assert_string_equal(key_at(c, now + 3600), "KEY3");
	s3_creds_put(held);
	s3_client_free(c);

	/* keys without an expiration are never refreshed, a client without provider neither */
	c = client(&p, 0);
	assert_string_equal(key_at(c, now + 999999), "KEY0");
	s3_client_free(c);
	c = client(NULL, now + 10);
	assert_string_equal(key_at(c, now + 999999), "KEY0");
	assert_false(s3_creds_rejected(c, c->creds, now + 999999));
	s3_client_free(c);
	assert_int_equal(p.calls, 3);
}

static void test_failing_provider_keeps_old_keys(void **state)
{
	(void)state;
	struct provider p = { .lock = PTHREAD_MUTEX_INITIALIZER, .fail = true };
	time_t now = time(NULL);
	struct s3_client *c = client(&p, now + 10);

	assert_string_equal(key_at(c, now + 5), "KEY0");
	assert_int_equal(p.calls, 1);
	assert_string_equal(key_at(c, now + 6), "KEY0"); /* no new attempt for RETRY_S */
	assert_string_equal(key_at(c, now + 9), "KEY0");
	assert_int_equal(p.calls, 1);
	assert_string_equal(key_at(c, now + 11), "KEY0"); /* expired: still signed with, said */
	assert_int_equal(p.calls, 2);
	assert_false(s3_creds_rejected(c, c->creds, now + 12)); /* asked 1 s ago */
	assert_int_equal(p.calls, 2);
	assert_false(s3_creds_rejected(c, c->creds, now + 16)); /* a refusal: asked again */
	assert_int_equal(p.calls, 3);
	p.fail = false;
	p.expiration = now + 3600;
	assert_string_equal(key_at(c, now + 21), "KEY4");
	s3_client_free(c);
}

/* malformed keys from the provider are not taken */
static int provide_bad(void *arg, struct s3_creds *out, char *err, size_t errlen)
{
	(void)arg, (void)err, (void)errlen;
	out->access_key = strdup("KEY\r\nX-Injected: 1");
	out->secret_key = strdup("S");
	return 0;
}

static void test_malformed_keys_refused(void **state)
{
	(void)state;
	struct s3_client *c;
	time_t now = time(NULL);
	struct s3_config cfg = { .endpoint = "http://127.0.0.1:1", .bucket = "b",
				 .access_key = "KEY0", .secret_key = "SECRET0",
				 .creds_expiration = now + 10, .creds_fn = provide_bad };
	assert_int_equal(s3_client_new(&cfg, &c), 0);
	assert_string_equal(key_at(c, now + 6), "KEY0");
	s3_client_free(c);
	cfg.session_token = "T\nX";
	assert_int_equal(s3_client_new(&cfg, &c), -EINVAL);
	cfg.session_token = NULL;
	cfg.access_key = "";
	assert_int_equal(s3_client_new(&cfg, &c), -EINVAL);
}

struct getter {
	struct s3_client *c;
	time_t now;
	int64_t ns;           /* how long s3_creds_get took */
	char key[32];
};

static void *get_thread(void *arg)
{
	struct getter *g = arg;
	int64_t t0 = bfs_mono_ns();
	struct s3_cred_set *cs = s3_creds_get(g->c, g->now);
	g->ns = bfs_mono_ns() - t0;
	snprintf(g->key, sizeof(g->key), "%s", cs->access_key);
	s3_creds_put(cs);
	return NULL;
}

/* While one thread refreshes (slowly), others sign with the current keys at once, unless
 * those have expired: then they wait for the new ones. One provider call at a time. */
static void test_threads(void **state)
{
	(void)state;
	struct provider p = { .lock = PTHREAD_MUTEX_INITIALIZER, .delay_ms = 400 };
	time_t now = time(NULL);
	p.expiration = now + 3600;
	struct s3_client *c = client(&p, now + 10);
	struct getter g[8];
	pthread_t t[8];

	for (int i = 0; i < 8; i++) {
		g[i] = (struct getter){ .c = c, .now = now + (i < 4 ? 6 : 20) };
		pthread_create(&t[i], NULL, get_thread, &g[i]);
		if (i == 0)
			usleep(100 * 1000); /* thread 0 is inside the provider now */
	}
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(p.calls, 1);
	assert_int_equal(p.max_inside, 1);
	assert_string_equal(g[0].key, "KEY1");
	for (int i = 1; i < 4; i++) {   /* not expired: no waiting, the old keys */
		assert_string_equal(g[i].key, "KEY0");
		assert_true(g[i].ns < 200 * 1000000LL);
	}
	for (int i = 4; i < 8; i++) {   /* expired: waited for the refresh */
		assert_string_equal(g[i].key, "KEY1");
		assert_true(g[i].ns > 100 * 1000000LL);
	}
	s3_client_free(c);
}

int main(void)
{
	bfs_log_setup(0, BFS_LOG_ERR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_refresh_at),
		cmocka_unit_test(test_refresh_when_due),
		cmocka_unit_test(test_failing_provider_keeps_old_keys),
		cmocka_unit_test(test_malformed_keys_refused),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
