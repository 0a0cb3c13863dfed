/* util/encode.c — percent-encoding, hex and base64. */
#include "util/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int is_unreserved(unsigned char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
	       ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

char *bfs_uri_encode(const char *s, int keep_slash)
{
	static const char digits[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = malloc(3 * n + 1);
	char *p = out;

	if (!out)
		return NULL;
	for (const unsigned char *q = (const unsigned char *)s; *q; q++) {
		if (is_unreserved(*q) || (keep_slash && *q == '/')) {
			*p++ = (char)*q;
		} else {
			*p++ = '%';
			*p++ = digits[*q >> 4];
			*p++ = digits[*q & 15];
		}
	}
	*p = '\0';
	return out;
}

static int hex_value(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

char *bfs_uri_decode(const char *s, int plus_is_space)
{
	char *out = malloc(strlen(s) + 1);
	char *p = out;

	if (!out)
		return NULL;
	for (; *s; s++) {
		int hi, lo;

		if (*s == '%' && (hi = hex_value(s[1])) >= 0 && (lo = hex_value(s[2])) >= 0) {
			*p++ = (char)(hi << 4 | lo);
			s += 2;
		} else if (*s == '+' && plus_is_space) {
			*p++ = ' ';
		} else {
			*p++ = *s;
		}
	}
	*p = '\0';
	return out;
}

void bfs_hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

int bfs_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

const char *bfs_trim(const char *s, size_t *n)
{
	while (*n && (*s == ' ' || *s == '\t'))
		s++, (*n)--;
	while (*n && (s[*n - 1] == ' ' || s[*n - 1] == '\t' || s[*n - 1] == '\r'))
		(*n)--;
	return s;
}

int bfs_unhex(const char *s, unsigned char *out, size_t n)
{
	if (!s || strlen(s) != 2 * n)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		int hi = bfs_hexval(s[2 * i]), lo = bfs_hexval(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t bfs_base64(const unsigned char *in, size_t n, char *out)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		size_t left = n - i;

		if (left > 1)
			v |= (uint32_t)in[i + 1] << 8;
		if (left > 2)
			v |= in[i + 2];
		out[o++] = b64_alphabet[v >> 18 & 63];
		out[o++] = b64_alphabet[v >> 12 & 63];
		out[o++] = left > 1 ? b64_alphabet[v >> 6 & 63] : '=';
		out[o++] = left > 2 ? b64_alphabet[v & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

static int b64_value(char ch)
{
	const char *p = ch ? strchr(b64_alphabet, ch) : NULL;

	return p ? (int)(p - b64_alphabet) : -1;
}

long bfs_base64_decode(const char *in, size_t len, unsigned char *out)
{
	size_t o = 0;

	if (len % 4)
		return -EINVAL;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		int pad = 0;

		for (int j = 0; j < 4; j++) {
			if (in[i + j] == '=' && i + 4 == len && j >= 2) {
				v[j] = 0;
				pad++;
			} else if (pad || (v[j] = b64_value(in[i + j])) < 0) {
				return -EINVAL; /* bad character, or data after padding */
			}
		}
		uint32_t word = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
				(uint32_t)v[3];
		out[o++] = (unsigned char)(word >> 16);
		if (pad < 2)
			out[o++] = (unsigned char)(word >> 8);
		if (pad < 1)
			out[o++] = (unsigned char)word;
	}
	return (long)o;
}

int bfs_parse_size(const char *s, uint64_t *out)
{
	char *end;
	uint64_t mult = 1;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case '\0': break;
	case 'k': case 'K': mult = 1ULL << 10; end++; break;
	case 'm': case 'M': mult = 1ULL << 20; end++; break;
	case 'g': case 'G': mult = 1ULL << 30; end++; break;
	case 't': case 'T': mult = 1ULL << 40; end++; break;
	default: return -EINVAL;
	}
	/* Accept "64M", "64MB", "64MiB". */
	if ((*end == 'i' || *end == 'I') && mult > 1)
		end++;
	if ((*end == 'b' || *end == 'B') && mult > 1)
		end++;
	if (*end)
		return -EINVAL;
	if (v > UINT64_MAX / mult)
		return -EINVAL;
	*out = v * mult;
	return 0;
}
