/* fs/cred_process.c — credential_process: split the command like the AWS CLI (POSIX shell
 * quoting, no expansion), run it without a shell, read its JSON (fs/cred_json.c).
 * The command's stdout and stderr come back through pipes, never to our terminal or log
 * except the first line of stderr in an error message. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fs/fs_int.h"
#include "util/util.h"

#define MAX_STDOUT (64 * 1024)
#define MAX_STDERR 512

extern char **environ;

void bfs_cmd_free(char **argv)
{
	if (!argv)
		return;
	for (char **a = argv; *a; a++)
		free(*a);
	free(argv);
}

int bfs_cmd_split(const char *cmd, char ***out)
{
	size_t len = strlen(cmd), n = 0;
	char **argv = calloc(len / 2 + 2, sizeof(*argv)); /* at most one word per 2 chars, +1 */
	char *word = malloc(len + 1);
	int rc = -ENOMEM;

	*out = NULL;
	if (!argv || !word)
		goto fail;
	for (const char *p = cmd; ; ) {
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
			p++;
		if (!*p)
			break;
		size_t w = 0;
		while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
			if (*p == '\\') {
				if (!p[1])
					goto bad;
				word[w++] = p[1];
				p += 2;
			} else if (*p == '\'') {
				const char *q = strchr(p + 1, '\'');
				if (!q)
					goto bad;
				memcpy(word + w, p + 1, (size_t)(q - p - 1));
				w += (size_t)(q - p - 1);
				p = q + 1;
			} else if (*p == '"') {
				for (p++; *p && *p != '"'; p++) {
					if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
						p++;
					word[w++] = *p;
				}
				if (*p != '"')
					goto bad;
				p++;
			} else {
				word[w++] = *p++;
			}
		}
		if (!(argv[n] = strndup(word, w)))
			goto fail;
		n++;
	}
	if (n == 0)
		goto bad;
	free(word);
	*out = argv;
	return 0;
bad:
	rc = -EINVAL;
fail:
	free(word);
	bfs_cmd_free(argv);
	return rc;
}

/* Appends what fd has to buf (up to cap; more is counted in *over). 0 at EOF, 1 more to
 * come, -errno. */
static int drain(int fd, char *buf, size_t *len, size_t cap, size_t *over)
{
	char tmp[4096];
	ssize_t n = read(fd, tmp, sizeof(tmp));
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : -errno;
	if (n == 0)
		return 0;
	size_t take = (size_t)n;
	if (*len + take > cap) {
		*over += *len + take - cap;
		take = cap - *len;
	}
	memcpy(buf + *len, tmp, take);
	*len += take;
	explicit_bzero(tmp, sizeof(tmp));
	return 1;
}

/* The first line of the command's stderr, for a message ("" if none). */
static const char *first_line(char *s)
{
	while (*s == '\n' || *s == '\r' || *s == ' ')
		s++;
	s[strcspn(s, "\r\n")] = '\0';
	return s;
}

int bfs_cred_process_run(const char *cmd, struct s3_creds *out, char *err, size_t errlen)
{
	char **argv = NULL, *outbuf = NULL, errbuf[MAX_STDERR + 1];
	size_t outlen = 0, errlen_got = 0, over = 0, eover = 0;
	int po[2] = { -1, -1 }, pe[2] = { -1, -1 };
	posix_spawn_file_actions_t fa;
	bool fa_ready = false;
	pid_t pid = -1;
	int rc;

	memset(out, 0, sizeof(*out));
	if ((rc = bfs_cmd_split(cmd, &argv))) {
		snprintf(err, errlen, rc == -EINVAL ? "cannot split the command into words "
			 "(an unterminated quote or a trailing backslash?)" : "out of memory");
		return rc;
	}
	rc = -ENOMEM;
	if (!(outbuf = malloc(MAX_STDOUT + 1)))
		goto out;
	if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC)) {
		rc = -errno;
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		goto out;
	}
	if ((rc = -posix_spawn_file_actions_init(&fa)))
		goto out;
	fa_ready = true;
	if ((rc = -posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) ||
	    (rc = -posix_spawn_file_actions_adddup2(&fa, po[1], 1)) ||
	    (rc = -posix_spawn_file_actions_adddup2(&fa, pe[1], 2)) ||
	    (rc = -posix_spawn_file_actions_addclosefrom_np(&fa, 3)))
		goto out;
	int e = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	if (e) {
		pid = -1;
		rc = -e;
		snprintf(err, errlen, "cannot run %.200s: %s", argv[0], strerror(e));
		goto out;
	}
	close(po[1]);
	close(pe[1]);
	po[1] = pe[1] = -1;

	/* read both pipes until both are closed, or the time is up */
	int64_t deadline = bfs_mono_ns() + BFS_CRED_PROCESS_TIMEOUT_S * 1000000000LL;
	bool out_open = true, err_open = true;
	while (out_open || err_open) {
		struct pollfd pfd[2] = { { out_open ? po[0] : -1, POLLIN, 0 },
					 { err_open ? pe[0] : -1, POLLIN, 0 } };
		int64_t left = deadline - bfs_mono_ns();
		if (left <= 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			pid = -1;
			rc = -ETIMEDOUT;
			snprintf(err, errlen, "no answer within %d s; killed", BFS_CRED_PROCESS_TIMEOUT_S);
			goto out;
		}
		int n = poll(pfd, 2, (int)(left / 1000000) + 1);
		if (n < 0 && errno != EINTR) {
			rc = -errno;
			goto out;
		}
		if (n <= 0)
			continue;
		if (out_open && pfd[0].revents) {
			int d = drain(po[0], outbuf, &outlen, MAX_STDOUT, &over);
			out_open = d > 0;
		}
		if (err_open && pfd[1].revents) {
			int d = drain(pe[0], errbuf, &errlen_got, MAX_STDERR, &eover);
			err_open = d > 0;
		}
	}
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	pid = -1;
	errbuf[errlen_got] = '\0';
	outbuf[outlen] = '\0';
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		const char *line = first_line(errbuf);
		if (WIFEXITED(status))
			snprintf(err, errlen, "exited with status %d%s%.200s", WEXITSTATUS(status),
				 *line ? ": " : "", line);
		else
			snprintf(err, errlen, "killed by signal %d%s%.200s",
				 WIFSIGNALED(status) ? WTERMSIG(status) : 0, *line ? ": " : "", line);
		rc = -EIO;
		goto out;
	}
	if (over) {
		snprintf(err, errlen, "printed more than %d bytes", MAX_STDOUT);
		rc = -EIO;
		goto out;
	}
	char why[256] = "";
	rc = bfs_cred_json_parse(outbuf, outlen, BFS_CRED_JSON_PROCESS, out, why, sizeof(why));
	if (rc)
		snprintf(err, errlen, "bad output: %s", why);
out:
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	if (fa_ready)
		posix_spawn_file_actions_destroy(&fa);
	for (int i = 0; i < 2; i++) {
		if (po[i] >= 0)
			close(po[i]);
		if (pe[i] >= 0)
			close(pe[i]);
	}
	if (outbuf) {
		explicit_bzero(outbuf, MAX_STDOUT + 1);
		free(outbuf);
	}
	bfs_cmd_free(argv);
	return rc;
}
