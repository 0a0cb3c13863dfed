/* tests/fuzz/fuzz_options.c — the command line parser (fs/options.c): BUCKET[:PREFIX],
 * MOUNTPOINT, -f, -d, -o opt[=value][,...] and everything it checks, and the AWS config file
 * it reads the profile's region and endpoint from (fs/aws_config.c).
 * Input: the arguments after argv[0], one per line (a final newline adds no empty one); after
 * a NUL byte, if there is one, the text of ${AWS_CONFIG_FILE} (else there is none). The rest
 * of the environment the parser reads (AWS_*) is cleared and HOME points at nothing, so that
 * each input decides alone. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs_int.h"
#include "tests/fuzz/fuzz.h"

#define MAX_ARGS 64
#define NO_CONFIG "/nonexistent/bucketfs-fuzz/config"

static char config_dir[] = "/tmp/bucketfs-fuzz-XXXXXX", config_path[64];

static void remove_config(void)
{
	unlink(config_path);
	rmdir(config_dir);
}

/* 0, or -errno if the config file's directory cannot be made. */
static int isolate_env(void)
{
	static const char *const vars[] = {
		"AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL",
		"AWS_ENDPOINT_URL_S3", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
		"AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_SHARED_CREDENTIALS_FILE", NULL,
	};
	for (const char *const *v = vars; *v; v++)
		unsetenv(*v);
	setenv("HOME", "/nonexistent/bucketfs-fuzz", 1);
	if (!mkdtemp(config_dir))
		return -errno;
	snprintf(config_path, sizeof(config_path), "%s/config", config_dir);
	atexit(remove_config);
	return 0;
}

/* Points AWS_CONFIG_FILE at a file holding [text, text + len), or at nothing (text NULL). */
static void set_config(const uint8_t *text, size_t len)
{
	int fd;

	setenv("AWS_CONFIG_FILE", NO_CONFIG, 1);
	if (!text)
		return;
	fd = open(config_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	if (write(fd, text, len) == (ssize_t)len)
		setenv("AWS_CONFIG_FILE", config_path, 1);
	close(fd);
}

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static void check_parsed(const struct bfs_options *o)
{
	size_t bl = strlen(o->bucket), pl = strlen(o->prefix);

	FUZZ_CHECK(bl >= 3 && bl <= 63 &&
		   strspn(o->bucket, "abcdefghijklmnopqrstuvwxyz0123456789.-") == bl);
	FUZZ_CHECK(pl == 0 || (o->prefix[0] != '/' && o->prefix[pl - 1] == '/' &&
			       !strstr(o->prefix, "//")));
	FUZZ_CHECK(o->mountpoint && o->mountpoint[0] == '/');
	FUZZ_CHECK(o->cache_dir && o->cache_dir[0] == '/');
	FUZZ_CHECK(o->region && o->profile);
	if (o->endpoint) {
		size_t el = strlen(o->endpoint);
		FUZZ_CHECK(strncmp(o->endpoint, "http://", 7) == 0 ||
			   strncmp(o->endpoint, "https://", 8) == 0);
		FUZZ_CHECK(o->endpoint[el - 1] != '/');
	}
	const char *paths[] = { o->ca_file, o->passwd_file, o->hmac_key_file };
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		FUZZ_CHECK(!paths[i] || paths[i][0] == '/');
	FUZZ_CHECK(is_pow2(o->block_size) && o->block_size >= 4096 &&
		   o->block_size <= (64u << 20));
	FUZZ_CHECK(o->part_size >= (5u << 20) && o->part_size <= (5ull << 30));
	FUZZ_CHECK(o->copy_limit >= (5u << 20) && o->copy_limit <= (5ull << 30));
	FUZZ_CHECK(o->readahead <= (1ull << 30));
	FUZZ_CHECK(o->max_connections >= 1 && o->max_connections <= 1000);
	FUZZ_CHECK(o->umask <= 0777 && o->timeout >= 1 && o->timeout <= 3600);
	FUZZ_CHECK(o->stat_ttl >= 0 && o->upload_delay >= 0 && o->neg_ttl >= 0);
	FUZZ_CHECK(o->log_level >= BFS_LOG_ERR && o->log_level <= BFS_LOG_DEBUG);
	FUZZ_CHECK(o->fuse_argc >= 1 && o->fuse_argv && o->fuse_argv[o->fuse_argc] == NULL);
	for (int i = 0; i < o->fuse_argc; i++)
		FUZZ_CHECK(o->fuse_argv[i] != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int isolated = 1; /* 1: not yet; else isolate_env's result */
	const uint8_t *nul = memchr(data, '\0', size);
	size_t alen = nul ? (size_t)(nul - data) : size;
	char *copy = malloc(alen + 1), *argv[MAX_ARGS + 2], err[1024];
	int argc = 0, rc;
	struct bfs_options o;

	if (isolated == 1)
		isolated = isolate_env();
	FUZZ_CHECK(isolated == 0); /* mkdtemp in /tmp */
	if (!copy)
		goto out;
	set_config(nul ? nul + 1 : NULL, nul ? size - alen - 1 : 0);
	memcpy(copy, data, alen);
	copy[alen] = '\0';
	argv[argc++] = "bucketfs";
	for (char *s = copy; s && argc <= MAX_ARGS;) {
		char *nl = strchr(s, '\n');
		if (nl)
			*nl = '\0';
		argv[argc++] = s;
		s = nl && nl[1] ? nl + 1 : NULL; /* a final newline ends the last argument */
	}
	argv[argc] = NULL;

	rc = bfs_options_parse(argc, argv, &o, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || rc == 1 || rc == -EINVAL || rc == -ENOMEM || rc == -EACCES ||
		   rc == -EFBIG);
	if (rc == 0) {
		check_parsed(&o);
		bfs_options_free(&o);
	} else {
		/* nothing is left to free, and a failure says why in one line */
		FUZZ_CHECK(!o.bucket && !o.prefix && !o.fuse_argv && !o.cache_dir);
		if (rc < 0)
			FUZZ_CHECK(strncmp(err, "bucketfs: ", 10) == 0 && !strchr(err, '\n'));
	}
out:
	free(copy);
	return 0;
}
