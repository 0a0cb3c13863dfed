/* s3/client.c — client life cycle, stats and the bucket check. */
#include "s3/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static char *dup_or_null(const char *s, int *oom)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*oom = 1;
	return d;
}

/* Splits "scheme://host[:port][/]" into scheme and host; 0 or -EINVAL/-ENOMEM. */
static int parse_endpoint(const char *endpoint, char **scheme, char **host)
{
	const char *sep = strstr(endpoint, "://");
	const char *h, *end;

	if (!sep || (sep - endpoint != 4 && sep - endpoint != 5))
		return -EINVAL;
	if (strncmp(endpoint, "http", 4) != 0 && strncmp(endpoint, "https", 5) != 0)
		return -EINVAL;
	h = sep + 3;
	end = strchr(h, '/');
	if (!end)
		end = h + strlen(h);
	if (end == h)
		return -EINVAL;
	*scheme = strndup(endpoint, (size_t)(sep - endpoint));
	*host = strndup(h, (size_t)(end - h));
	return *scheme && *host ? 0 : -ENOMEM;
}

int s3_client_new(const struct s3_config *cfg, struct s3_client **out)
{
	struct s3_client *c;
	char *aws = NULL;
	int oom = 0, rc = -EINVAL;

	*out = NULL;
	if (!cfg || !cfg->bucket || !*cfg->bucket || !cfg->access_key || !cfg->secret_key)
		return -EINVAL;
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return -ENOMEM;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->pool_lock, NULL);
	pthread_cond_init(&c->pool_cond, NULL);

	c->region = dup_or_null(cfg->region ? cfg->region : "us-east-1", &oom);
	c->bucket = dup_or_null(cfg->bucket, &oom);
	c->ca_file = dup_or_null(cfg->ca_file, &oom);
	if (oom)
		goto nomem;
	if ((rc = s3_creds_init(c, cfg)))
		goto fail;
	rc = -EINVAL;
	if (!cfg->endpoint && asprintf(&aws, "https://s3.%s.amazonaws.com", c->region) < 0) {
		aws = NULL;
		goto nomem;
	}
	rc = parse_endpoint(cfg->endpoint ? cfg->endpoint : aws, &c->scheme, &c->host);
	if (rc)
		goto fail;
	if (strpbrk(c->bucket, "/\r\n")) {
		rc = -EINVAL;
		goto fail;
	}
	c->path_style = cfg->path_style;
	c->insecure = cfg->insecure;
	c->max_connections = cfg->max_connections > 0 ? cfg->max_connections : 16;
	c->part_size = cfg->part_size ? cfg->part_size : 8ULL << 20;
	if (c->part_size < S3_MIN_PART_SIZE)
		c->part_size = S3_MIN_PART_SIZE; /* S3 rejects smaller non-final parts */
	if (c->part_size > S3_MAX_COPY_SIZE)
		c->part_size = S3_MAX_COPY_SIZE;
	c->copy_part_threshold = cfg->copy_limit && cfg->copy_limit < S3_MAX_COPY_SIZE
				 ? cfg->copy_limit : S3_MAX_COPY_SIZE;
	if (c->copy_part_threshold < S3_MIN_PART_SIZE)
		c->copy_part_threshold = S3_MIN_PART_SIZE;
	c->copy_part_size = c->copy_part_threshold < (512ULL << 20) ? c->copy_part_threshold
								    : 512ULL << 20;
	c->retries = cfg->retries == 0 ? 5 : cfg->retries < 0 ? 0 : cfg->retries;
	c->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 10000;
	c->low_speed_timeout_s = cfg->low_speed_timeout_s > 0 ? cfg->low_speed_timeout_s : 30;
	c->unreachable_wait_s = cfg->unreachable_wait_s > 0 ? cfg->unreachable_wait_s : 0;
	c->slow_ns = cfg->slow_log ? (int64_t)cfg->slow_ms * 1000000 : -1;
	c->idle = calloc((size_t)c->max_connections, sizeof(*c->idle));
	if (!c->idle)
		goto nomem;
	free(aws);
	*out = c;
	return 0;
nomem:
	rc = -ENOMEM;
fail:
	free(aws);
	s3_client_free(c);
	return rc;
}

void s3_client_free(struct s3_client *c)
{
	if (!c)
		return;
	for (int i = 0; i < c->nidle; i++)
		curl_easy_cleanup(c->idle[i]);
	free(c->idle);
	pthread_mutex_destroy(&c->pool_lock);
	pthread_cond_destroy(&c->pool_cond);
	if (c->creds_lock_ready)
		s3_creds_destroy(c);
	free(c->scheme);
	free(c->host);
	free(c->region);
	free(c->bucket);
	free(c->ca_file);
	free(c);
}

void s3_stats_get(struct s3_client *c, struct s3_stats *out)
{
	out->get = atomic_load(&c->stats.get);
	out->put = atomic_load(&c->stats.put);
	out->head = atomic_load(&c->stats.head);
	out->list = atomic_load(&c->stats.list);
	out->copy = atomic_load(&c->stats.copy);
	out->del = atomic_load(&c->stats.del);
	out->multipart = atomic_load(&c->stats.multipart);
	out->retries = atomic_load(&c->stats.retries);
	out->errors = atomic_load(&c->stats.errors);
	out->bytes_up = atomic_load(&c->stats.bytes_up);
	out->bytes_down = atomic_load(&c->stats.bytes_down);
}

int s3_bucket_check(struct s3_client *c)
{
	struct s3_pair params[] = { { "list-type", "2" }, { "max-keys", "0" } };
	struct s3_req r;
	int rc;

	s3_req_init(&r, "GET", NULL);
	r.what = "bucket check";
	r.quiet = true; /* the caller's message says why the mount fails */
	r.params = params;
	r.nparams = 2;
	atomic_fetch_add(&c->stats.list, 1);
	rc = s3_request(c, &r);
	if (rc == 0) {
		struct s3_list_page page;
		rc = s3_xml_parse_list(r.resp, r.resp_len, &page);
		if (rc == 0)
			s3_list_page_free(&page);
		else
			s3_set_error("bucket check %s: the endpoint did not answer with a listing",
				     c->bucket);
	} else if (rc == -ENOENT) {
		/* 404 without an S3 error code: the endpoint is not an S3 bucket. */
		rc = -ENXIO;
	}
	s3_req_free(&r);
	return rc;
}
