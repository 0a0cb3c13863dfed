/* s3/errmap.c — the one table mapping S3 errors to errno, and s3_last_error(). */
#include "s3/internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* S3 error codes first (they are more precise than the status), then status fallbacks. */
static const struct {
	const char *code; /* NULL: matches on status alone */
	long status;      /* 0: any status */
	int err;
	bool retry;
} errmap[] = {
	{ "NoSuchKey", 0, ENOENT, false },
	{ "NoSuchUpload", 0, ENOENT, false },
	{ "NoSuchBucket", 0, ENXIO, false },
	{ "AccessDenied", 0, EACCES, false },
	{ "SignatureDoesNotMatch", 0, EACCES, false },
	{ "InvalidAccessKeyId", 0, EACCES, false },
	{ "InvalidToken", 0, EACCES, false },
	{ "ExpiredToken", 0, EACCES, false },
	{ "AllAccessDisabled", 0, EACCES, false },
	{ "AccountProblem", 0, EACCES, false },
	{ "AuthorizationHeaderMalformed", 0, EINVAL, false },
	{ "PreconditionFailed", 0, ESTALE, false },
	{ "BadDigest", 0, EBADMSG, true },
	{ "InvalidDigest", 0, EBADMSG, false },
	{ "InvalidPart", 0, EBADMSG, false },
	{ "InvalidPartOrder", 0, EINVAL, false },
	{ "EntityTooLarge", 0, EFBIG, false },
	{ "EntityTooSmall", 0, EINVAL, false },
	{ "KeyTooLongError", 0, ENAMETOOLONG, false },
	{ "InvalidObjectName", 0, EINVAL, false },     /* Ceph RGW: key over 1024 bytes */
	{ "MetadataTooLarge", 0, E2BIG, false },
	{ "InvalidRange", 0, ERANGE, false },
	{ "NotImplemented", 0, ENOSYS, false },
	{ "InvalidArgument", 0, EINVAL, false },
	{ "InvalidRequest", 0, EINVAL, false },
	{ "InvalidBucketName", 0, EINVAL, false },
	{ "PermanentRedirect", 0, EIO, false },
	{ "SlowDown", 0, EIO, true },
	{ "ServiceUnavailable", 0, EIO, true },
	{ "InternalError", 0, EIO, true },
	{ "RequestTimeout", 0, ETIMEDOUT, true },
	{ "RequestTimeTooSkewed", 0, EACCES, false },
	{ NULL, 304, EALREADY, false },
	{ NULL, 400, EINVAL, false },
	{ NULL, 401, EACCES, false },
	{ NULL, 403, EACCES, false },
	{ NULL, 404, ENOENT, false },
	{ NULL, 409, EBUSY, false },
	{ NULL, 412, ESTALE, false },
	{ NULL, 416, ERANGE, false },
	{ NULL, 500, EIO, true },
	{ NULL, 502, EIO, true },
	{ NULL, 503, EIO, true },
	{ NULL, 504, EIO, true },
};

/* Index of the matching row, or -1. */
static int errmap_find(long status, const char *code)
{
	size_t n = sizeof(errmap) / sizeof(errmap[0]);

	if (code && *code)
		for (size_t i = 0; i < n; i++)
			if (errmap[i].code && strcmp(errmap[i].code, code) == 0)
				return (int)i;
	for (size_t i = 0; i < n; i++)
		if (!errmap[i].code && errmap[i].status == status)
			return (int)i;
	return -1;
}

int s3_errmap_http(long status, const char *code)
{
	int i = errmap_find(status, code);

	if (i >= 0)
		return -errmap[i].err;
	return status >= 200 && status < 300 ? 0 : -EIO;
}

bool s3_errmap_retryable_http(long status, const char *code)
{
	int i = errmap_find(status, code);

	if (i >= 0)
		return errmap[i].retry;
	return status >= 500;
}

int s3_errmap_curl(CURLcode rc)
{
	switch (rc) {
	case CURLE_OK:
		return 0;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
		return -EHOSTUNREACH;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
		return -EPROTO;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		return -ECONNRESET;
	default:
		return -EIO;
	}
}

const char *s3_errmap_curl_what(CURLcode rc)
{
	switch (rc) {
	case CURLE_PEER_FAILED_VERIFICATION:
		return "TLS certificate not accepted";
	case CURLE_SSL_CACERT_BADFILE:
		return "cannot load the CA certificates";
	case CURLE_SSL_CONNECT_ERROR:
		return "TLS handshake failed";
	case CURLE_SSL_CERTPROBLEM:
		return "TLS client certificate problem";
	default:
		return NULL;
	}
}

bool s3_errmap_unreachable_curl(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
		return true;
	default:
		return false;
	}
}

bool s3_errmap_retryable_curl(CURLcode rc)
{
	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return true;
	default:
		return false;
	}
}

/* The calling thread's last error message. */
static _Thread_local char last_error[4096]; /* room for two 1024-byte keys */

void s3_set_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	for (char *p = last_error; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

const char *s3_last_error(void)
{
	return last_error;
}
