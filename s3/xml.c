/* s3/xml.c — parsing of S3 XML responses with libxml2.
 * Hardened: XML_PARSE_NONET (no network), never XML_PARSE_NOENT/DTDLOAD (no entity expansion,
 * no external DTD), and any document with a DOCTYPE is rejected outright: S3 never sends one.
 * Text is read from text/CDATA nodes only, so entity references are never expanded. */
#include "s3/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "util/util.h"

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void xml_init(void)
{
	xmlInitParser();
}

/* Parses body; NULL if it is not well-formed XML or declares a DTD. Owner: the caller. */
static xmlDocPtr xml_parse(const char *body, size_t len)
{
	xmlDocPtr doc;

	pthread_once(&xml_once, xml_init);
	/* S3 sends whitespace to keep slow CopyObject/CompleteMultipartUpload connections alive
	 * before the document; an XML declaration is only allowed at its very start. */
	while (body && len > 0 && (*body == ' ' || *body == '\t' || *body == '\r' || *body == '\n')) {
		body++;
		len--;
	}
	if (!body || len == 0 || len > INT32_MAX)
		return NULL;
	doc = xmlReadMemory(body, (int)len, NULL, NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (doc && (doc->intSubset || doc->extSubset)) {
		xmlFreeDoc(doc);
		return NULL;
	}
	return doc;
}

static bool is_elem(xmlNodePtr n, const char *name)
{
	return n && n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

static xmlNodePtr child(xmlNodePtr parent, const char *name)
{
	for (xmlNodePtr n = parent ? parent->children : NULL; n; n = n->next)
		if (is_elem(n, name))
			return n;
	return NULL;
}

/* First element named name in the subtree under n (depth first), or NULL. */
static xmlNodePtr descendant(xmlNodePtr n, const char *name)
{
	for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next) {
		if (c->type != XML_ELEMENT_NODE)
			continue;
		if (is_elem(c, name))
			return c;
		xmlNodePtr d = descendant(c, name);
		if (d)
			return d;
	}
	return NULL;
}

/* Text and CDATA children of n concatenated; malloc'd, owned by the caller; "" if none. */
static char *text_dup(xmlNodePtr n)
{
	size_t len = 0, off = 0;
	char *s;

	for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next)
		if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content)
			len += strlen((const char *)c->content);
	s = malloc(len + 1);
	if (!s)
		return NULL;
	for (xmlNodePtr c = n ? n->children : NULL; c; c = c->next)
		if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content) {
			size_t l = strlen((const char *)c->content);
			memcpy(s + off, c->content, l);
			off += l;
		}
	s[off] = '\0';
	return s;
}

/* Text of n into out (truncated); "" if n is NULL. */
static void text_copy(xmlNodePtr n, char *out, size_t outlen)
{
	char *s = text_dup(n);

	snprintf(out, outlen, "%s", s ? s : "");
	free(s);
}

static void fill_error(xmlNodePtr e, struct s3_xml_error *err)
{
	memset(err, 0, sizeof(*err));
	text_copy(child(e, "Code"), err->code, sizeof(err->code));
	text_copy(child(e, "Message"), err->message, sizeof(err->message));
	text_copy(child(e, "RequestId"), err->request_id, sizeof(err->request_id));
	text_copy(child(e, "Key"), err->key, sizeof(err->key));
}

int s3_xml_parse_error(const char *body, size_t len, struct s3_xml_error *err)
{
	xmlDocPtr doc = xml_parse(body, len);
	xmlNodePtr root;
	int rc = -ENOENT;

	if (!doc)
		return -EPROTO;
	root = xmlDocGetRootElement(doc);
	if (is_elem(root, "Error")) {
		fill_error(root, err);
		rc = 0;
	}
	xmlFreeDoc(doc);
	return rc;
}

int s3_xml_find_text(const char *body, size_t len, const char *root_name, const char *name,
		     char *out, size_t outlen)
{
	xmlDocPtr doc = xml_parse(body, len);
	xmlNodePtr root, n;
	int rc = -ENOENT;

	if (!doc)
		return -EPROTO;
	root = xmlDocGetRootElement(doc);
	if (root && (root_name ? is_elem(root, root_name) : !is_elem(root, "Error")) &&
	    (n = descendant(root, name))) {
		text_copy(n, out, outlen);
		rc = 0;
	}
	xmlFreeDoc(doc);
	return rc;
}

int s3_xml_parse_delete_result(const char *body, size_t len, struct s3_xml_error *err)
{
	xmlDocPtr doc = xml_parse(body, len);
	xmlNodePtr root;
	int found = 0;

	if (!doc)
		return -EPROTO;
	root = xmlDocGetRootElement(doc);
	if (is_elem(root, "Error")) {
		fill_error(root, err);
		found = 1;
	}
	for (xmlNodePtr n = is_elem(root, "DeleteResult") ? root->children : NULL; n && !found;
	     n = n->next) {
		if (!is_elem(n, "Error"))
			continue;
		fill_error(n, err);
		found = strcmp(err->code, "NoSuchKey") != 0;
	}
	xmlFreeDoc(doc);
	return found;
}

/* Text of n, url-decoded when url_encoded. malloc'd, owned by the caller. */
static char *key_dup(xmlNodePtr n, bool url_encoded)
{
	char *raw = text_dup(n), *dec;

	if (!raw || !url_encoded)
		return raw;
	dec = bfs_uri_decode(raw, 1);
	free(raw);
	return dec;
}

static uint64_t text_u64(xmlNodePtr n)
{
	char buf[32];

	text_copy(n, buf, sizeof(buf));
	return strtoull(buf, NULL, 10);
}

int s3_xml_parse_list(const char *body, size_t len, struct s3_list_page *out)
{
	xmlDocPtr doc = xml_parse(body, len);
	xmlNodePtr root;
	size_t nobj = 0, npre = 0;
	bool url;
	char enc[16], trunc[8];
	int rc = -EPROTO;

	memset(out, 0, sizeof(*out));
	if (!doc)
		return -EPROTO;
	root = xmlDocGetRootElement(doc);
	if (!is_elem(root, "ListBucketResult"))
		goto out;
	text_copy(child(root, "EncodingType"), enc, sizeof(enc));
	url = strcmp(enc, "url") == 0;
	for (xmlNodePtr n = root->children; n; n = n->next) {
		if (is_elem(n, "Contents"))
			nobj++;
		else if (is_elem(n, "CommonPrefixes"))
			npre++;
	}
	rc = -ENOMEM;
	out->objects = calloc(nobj ? nobj : 1, sizeof(*out->objects));
	out->prefixes = calloc(npre ? npre : 1, sizeof(*out->prefixes));
	if (!out->objects || !out->prefixes)
		goto out;
	for (xmlNodePtr n = root->children; n; n = n->next) {
		if (is_elem(n, "Contents")) {
			struct s3_list_entry *e = &out->objects[out->nobjects];
			char etag[80], lm[48];

			e->key = key_dup(child(n, "Key"), url);
			if (!e->key)
				goto out;
			out->nobjects++;
			e->size = text_u64(child(n, "Size"));
			text_copy(child(n, "ETag"), etag, sizeof(etag));
			s3_etag_copy(e->etag, etag);
			text_copy(child(n, "LastModified"), lm, sizeof(lm));
			s3_parse_iso8601(lm, &e->last_modified);
		} else if (is_elem(n, "CommonPrefixes")) {
			char *p = key_dup(child(n, "Prefix"), url);
			if (!p)
				goto out;
			out->prefixes[out->nprefixes++] = p;
		}
	}
	text_copy(child(root, "IsTruncated"), trunc, sizeof(trunc));
	if (strcmp(trunc, "true") == 0) {
		/* The continuation token is opaque and never url-encoded by S3. */
		out->next_token = text_dup(child(root, "NextContinuationToken"));
		if (!out->next_token)
			goto out;
		if (!*out->next_token) {
			rc = -EPROTO; /* truncated without a token: we could never go on */
			goto out;
		}
	}
	rc = 0;
out:
	if (rc)
		s3_list_page_free(out);
	xmlFreeDoc(doc);
	return rc;
}

int s3_xml_parse_uploads(const char *body, size_t len, struct s3_upload_list *out)
{
	xmlDocPtr doc = xml_parse(body, len);
	xmlNodePtr root;
	size_t n = 0;
	bool url;
	char enc[16], trunc[8];
	int rc = -EPROTO;

	memset(out, 0, sizeof(*out));
	if (!doc)
		return -EPROTO;
	root = xmlDocGetRootElement(doc);
	if (!is_elem(root, "ListMultipartUploadsResult"))
		goto out;
	text_copy(child(root, "EncodingType"), enc, sizeof(enc));
	url = strcmp(enc, "url") == 0;
	for (xmlNodePtr u = root->children; u; u = u->next)
		n += is_elem(u, "Upload");
	rc = -ENOMEM;
	out->uploads = calloc(n ? n : 1, sizeof(*out->uploads));
	if (!out->uploads)
		goto out;
	for (xmlNodePtr u = root->children; u; u = u->next) {
		if (!is_elem(u, "Upload"))
			continue;
		struct s3_upload *e = &out->uploads[out->n];
		char lm[48];

		e->key = key_dup(child(u, "Key"), url);
		e->upload_id = text_dup(child(u, "UploadId"));
		out->n++;
		if (!e->key || !e->upload_id)
			goto out;
		text_copy(child(u, "Initiated"), lm, sizeof(lm));
		s3_parse_iso8601(lm, &e->initiated);
	}
	text_copy(child(root, "IsTruncated"), trunc, sizeof(trunc));
	if (strcmp(trunc, "true") == 0) {
		out->next_key_marker = key_dup(child(root, "NextKeyMarker"), url);
		out->next_upload_id_marker = text_dup(child(root, "NextUploadIdMarker"));
		if (!out->next_key_marker || !out->next_upload_id_marker)
			goto out;
	}
	rc = 0;
out:
	if (rc)
		s3_upload_list_free(out);
	xmlFreeDoc(doc);
	return rc;
}
