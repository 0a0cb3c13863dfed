/* tests/fuzz/fuzz_creds.c — where temporary keys come from: the JSON that credential_process
 * prints and that EC2 instance metadata serves (fs/cred_json.c, with its ISO 8601 times),
 * and the splitting of a credential_process command into words (fs/cred_process.c).
 * Input: one selector byte, then the text. Selector % 3: 0 credential_process JSON, 1
 * instance metadata JSON, 2 a command line; the text is also parsed as an ISO 8601 time. */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "fs/fs_int.h"
#include "tests/fuzz/fuzz.h"

static void fuzz_json(const char *text, size_t len, enum bfs_cred_json kind)
{
	struct s3_creds c;
	char err[256] = "";
	int rc = bfs_cred_json_parse(text, len, kind, &c, err, sizeof(err));

	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
	if (rc) {
		FUZZ_CHECK(!c.access_key && !c.secret_key && !c.session_token);
		FUZZ_CHECK(err[0] != '\0');
		return;
	}
	FUZZ_CHECK(c.access_key && c.access_key[0] && c.secret_key && c.secret_key[0]);
	FUZZ_CHECK(!c.session_token || c.session_token[0]);
	if (kind == BFS_CRED_JSON_IMDS)
		FUZZ_CHECK(c.session_token != NULL);
	s3_creds_free(&c);
}

static void fuzz_cmd(const char *cmd)
{
	char **argv = NULL;
	int rc = bfs_cmd_split(cmd, &argv);

	FUZZ_CHECK(rc == 0 || rc == -EINVAL || rc == -ENOMEM);
	FUZZ_CHECK(!rc == !!argv);
	if (rc)
		return;
	FUZZ_CHECK(argv[0] != NULL);
	size_t n = 0, total = 0;
	for (; argv[n]; n++)
		total += strlen(argv[n]);
	FUZZ_CHECK(total <= strlen(cmd)); /* quotes and escapes only ever shrink a word */
	bfs_cmd_free(argv);
}

/* "YYYY-MM-DDThh:mm:ss": what a time that parses starts with. */
static void fuzz_time(const char *s)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd";
	time_t t;

	if (bfs_iso8601_parse(s, &t))
		return;
	for (size_t i = 0; i < sizeof(shape) - 1; i++)
		FUZZ_CHECK(shape[i] == 'd' ? isdigit((unsigned char)s[i]) : s[i] == shape[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned sel = data[0] % 3;
	size_t len = size - 1;
	/* exactly the text (the JSON parser is given a length), then a terminated copy */
	char *text = malloc(len ? len : 1), *str = malloc(len + 1);

	if (text && str) {
		memcpy(text, data + 1, len);
		memcpy(str, data + 1, len);
		str[len] = '\0';
		if (sel < 2)
			fuzz_json(text, len, sel ? BFS_CRED_JSON_IMDS : BFS_CRED_JSON_PROCESS);
		else
			fuzz_cmd(str);
		fuzz_time(str);
	}
	free(text);
	free(str);
	return 0;
}
