/* s3/list.c — ListObjectsV2 pages. */
#include "s3/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int s3_list(struct s3_client *c, const char *prefix, const char *delimiter, const char *token,
	    int max_keys, struct s3_list_page *out)
{
	return s3_list_after(c, prefix, delimiter, token, NULL, max_keys, out);
}

int s3_list_after(struct s3_client *c, const char *prefix, const char *delimiter,
		  const char *token, const char *start_after, int max_keys,
		  struct s3_list_page *out)
{
	struct s3_pair params[7];
	size_t n = 0;
	char maxk[16];
	struct s3_req r;
	int rc;

	memset(out, 0, sizeof(*out));
	snprintf(maxk, sizeof(maxk), "%d", max_keys > 0 ? max_keys : 1000);
	params[n++] = (struct s3_pair){ "list-type", "2" };
	params[n++] = (struct s3_pair){ "encoding-type", "url" };
	params[n++] = (struct s3_pair){ "max-keys", maxk };
	if (prefix && *prefix)
		params[n++] = (struct s3_pair){ "prefix", prefix };
	if (delimiter && *delimiter)
		params[n++] = (struct s3_pair){ "delimiter", delimiter };
	if (token && *token)
		params[n++] = (struct s3_pair){ "continuation-token", token };
	else if (start_after && *start_after)
		params[n++] = (struct s3_pair){ "start-after", start_after };

	s3_req_init(&r, "GET", NULL);
	r.what = "LIST";
	r.params = params;
	r.nparams = n;
	atomic_fetch_add(&c->stats.list, 1);
	rc = s3_request(c, &r);
	if (rc == 0) {
		rc = s3_xml_parse_list(r.resp, r.resp_len, out);
		if (rc)
			s3_set_error("LIST %s: malformed ListObjectsV2 response (request id %s)",
				     prefix ? prefix : "", r.request_id[0] ? r.request_id : "-");
	}
	s3_req_free(&r);
	return rc;
}

void s3_list_page_free(struct s3_list_page *p)
{
	for (size_t i = 0; i < p->nobjects; i++)
		free(p->objects[i].key);
	for (size_t i = 0; i < p->nprefixes; i++)
		free(p->prefixes[i]);
	free(p->objects);
	free(p->prefixes);
	free(p->next_token);
	memset(p, 0, sizeof(*p));
}
