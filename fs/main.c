/* fs/main.c — bin/bucketfs: parse options, check the bucket, recover the journal, mount,
 * daemonize once the mount is live, serve until unmounted, finish every upload. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs_int.h"
#include "util/util.h"

static void die(const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "bucketfs: ");
	fprintf(stderr, fmt, a, b);
	fputc('\n', stderr);
}

/* at_mount: the checks before mounting fail at once on an unreachable endpoint */
static int make_client(const struct bfs_options *o, const struct bfs_creds *cr, bool at_mount,
		       struct s3_client **out)
{
	struct s3_config cfg;
	bfs_s3_config(o, cr, &cfg);
	cfg.slow_log = o->slow_ms >= 0;
	cfg.slow_ms = o->slow_ms >= 0 ? (unsigned long)o->slow_ms : 0;
	if (at_mount)
		cfg.unreachable_wait_s = 0;
	return s3_client_new(&cfg, out);
}

static int open_cache(const struct bfs_options *o, struct cache **out)
{
	struct cache_config cc = {
		.dir = o->cache_dir,
		.block_size = o->block_size,
		.size_cap = o->cache_size,
		.ttl_sec = o->cache_ttl,
	};
	int rc = cache_open(&cc, out);
	if (rc == -EBUSY && bfs_cache_wait(o->cache_dir, (int)o->lock_wait) == 0)
		rc = cache_open(&cc, out); /* the daemon that held it has finished */
	if (rc == -EBUSY)
		; /* said by bfs_cache_wait */
	else if (rc == -EPERM)
		die("cannot use cache_dir %s: it belongs to another user (it holds file data and "
		    "the journal, so it must be the mounting user's own)", o->cache_dir, NULL);
	else if (rc)
		die("cannot use cache_dir %s: %s", o->cache_dir, strerror(-rc));
	return rc;
}

/* Everything that can fail for a reason the user must hear about, checked while we still
 * have a terminal: credentials, endpoint, bucket, cache directory, journal recovery. */
static int preflight(struct bfs_options *o, struct bfs_creds *cr)
{
	struct s3_client *s3 = NULL;
	struct cache *cache = NULL;
	struct bfs_fs *fs = NULL;
	const char *where = o->endpoint ? o->endpoint : "AWS S3";
	int rc;
	if (o->ca_file && access(o->ca_file, R_OK) != 0) {
		rc = -errno;
		die("ca_file %s: %s", o->ca_file, strerror(-rc));
		goto out;
	}
	if (o->insecure && (!o->endpoint || strncmp(o->endpoint, "https://", 8) == 0))
		fprintf(stderr, "bucketfs: warning: no_verify_ssl: the TLS certificate of %s is not "
			"checked, so anyone on the way can read and change the data\n", where);
	rc = make_client(o, cr, true, &s3);
	if (rc) {
		die("cannot set up the S3 client for %s: %s", where, strerror(-rc));
		goto out;
	}
	rc = s3_bucket_check(s3);
	switch (rc) {
	case 0:
		break;
	case -ENXIO:
	case -ENOENT:
		die("bucket '%s' does not exist at %s", o->bucket, where);
		goto out;
	case -EACCES:
	case -EPERM:
		die("access denied to bucket '%s' (check the credentials): %s", o->bucket,
		    s3_last_error());
		goto out;
	case -EPROTO:
		/* TLS refused: curl's reason, and which CAs the certificate was checked against */
		fprintf(stderr, "bucketfs: no secure connection to %s: %s (%s%s)\n", where,
			s3_last_error(), o->ca_file ? "trusted: the CA certificates in ca_file=" :
			"trusted: the system's CA certificates; ca_file=PATH names another CA",
			o->ca_file ? o->ca_file : "");
		goto out;
	case -EHOSTUNREACH:
	case -ECONNREFUSED:
	case -ETIMEDOUT:
		die("cannot reach %s: %s", where, s3_last_error());
		goto out;
	default:
		die("cannot check bucket '%s': %s", o->bucket, s3_last_error());
		goto out;
	}
	rc = open_cache(o, &cache);
	if (rc)
		goto out;
	rc = bfs_fs_new(o, s3, cache, &fs);
	if (rc == 0) {
		rc = bfs_upload_recover(fs);
		if (rc)
			die("could not upload all data left in the journal by an earlier mount "
			    "(%s); it is kept in %s", strerror(-rc), o->cache_dir);
	}
out:
	bfs_fs_free(fs);
	if (cache)
		cache_close(cache);
	s3_client_free(s3);
	return rc;
}

int main(int argc, char **argv)
{
	struct bfs_options o;
	struct bfs_creds cr = { 0 };
	struct fuse_session *se = NULL;
	struct bfs_fs *fs = NULL;
	struct s3_client *s3 = NULL;
	struct cache *cache = NULL;
	char err[1024] = "";
	int status = 1;

	if (argc == 3 && (strcmp(argv[1], "-u") == 0 || strcmp(argv[1], "--unmount") == 0))
		return bfs_unmount_main(argv[2]);
	int rc = bfs_options_parse(argc, argv, &o, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	bfs_log_setup(0, (enum bfs_log_level)o.log_level);
	rc = bfs_creds_load(&o, &cr, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "%s\n", err);
		goto out;
	}
	/* HMAC keys: read once while we have a terminal; the memory survives daemonizing */
	if (bfs_integrity_load_keys(&o, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		goto out;
	}
	if (preflight(&o, &cr))
		goto out;

	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	/* o.fuse_argv starts with the program name and carries fsname, subtype, allow_other,
	 * ro and the other FUSE options; permissions are always checked by the kernel */
	for (int i = 0; i < o.fuse_argc; i++)
		if (fuse_opt_add_arg(&args, o.fuse_argv[i]))
			goto out_args;
	if (fuse_opt_add_arg(&args, "-odefault_permissions") ||
	    (o.debug && fuse_opt_add_arg(&args, "-d"))) {
		fprintf(stderr, "bucketfs: out of memory\n");
		goto out_args;
	}
	struct fuse_lowlevel_ops ops;
	bfs_fs_ops(&ops);
	/* the S3 client and the cache are made after daemonizing: threads and LMDB
	 * environments do not survive fork() */
	rc = bfs_fs_new(&o, NULL, NULL, &fs);
	if (rc)
		goto out_args;
	se = fuse_session_new(&args, &ops, sizeof(ops), fs);
	if (!se) {
		fprintf(stderr, "bucketfs: bad FUSE options (see bucketfs --help)\n");
		goto out_args;
	}
	fs->se = se;
	if (fuse_set_signal_handlers(se)) {
		fprintf(stderr, "bucketfs: cannot set signal handlers\n");
		goto out_session;
	}
	if (fuse_session_mount(se, o.mountpoint)) {
		fprintf(stderr, "bucketfs: cannot mount on %s\n", o.mountpoint);
		goto out_signals;
	}
	if (!o.foreground)
		bfs_log_setup(1, (enum bfs_log_level)o.log_level);
	if (fuse_daemonize(o.foreground)) {
		bfs_log(BFS_LOG_ERR, "cannot daemonize");
		goto out_unmount;
	}
	if (make_client(&o, &cr, false, &s3) || open_cache(&o, &cache)) {
		bfs_log(BFS_LOG_ERR, "cannot set up the S3 client or cache_dir %s", o.cache_dir);
		goto out_unmount;
	}
	fs->s3 = s3;
	fs->cache = cache;
	bfs_owner_say(cache, true, o.mountpoint);
	bfs_log(BFS_LOG_INFO, "mounted bucket %s%s%s on %s", o.bucket, o.prefix[0] ? ":" : "",
		o.prefix, o.mountpoint);
	struct fuse_loop_config *lc = fuse_loop_cfg_create();
	if (lc) {
		fuse_loop_cfg_set_max_threads(lc, 64);
		fuse_loop_cfg_set_idle_threads(lc, 16);
	}
	rc = fuse_session_loop_mt(se, lc);
	fuse_loop_cfg_destroy(lc);
	status = rc ? 1 : 0;
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se); /* runs destroy: waits for the uploads */
out_args:
	fuse_opt_free_args(&args);
out:
	bfs_fs_free(fs);
	if (cache)
		cache_close(cache);
	s3_client_free(s3);
	bfs_creds_free(&cr);
	bfs_options_free(&o);
	return status;
}
