/*
 * bench/driver.c: times commands the way docker and podman run a credential
 * helper: a direct fork + exec (no shell), stdin from a file, stdout and
 * stderr to /dev/null, and the child's peak RSS from wait4's ru_maxrss.
 *
 *   driver SPEC WARMUP ROUNDS OUT
 *
 * SPEC has one command a line, six tab-separated fields:
 *   ID  STDIN-FILE  EXIT-STATUS  UNLINK-FIRST  ENV  ARGV
 * ENV is space-separated NAME=VALUE pairs laid over the driver's own
 * environment ("-" for none); ARGV is space-separated, argv[0] an absolute
 * path; UNLINK-FIRST is a file removed before each run, outside the timed
 * span ("-" for none: the cold mint deletes its token cache this way).
 * Paths and values hold no spaces or tabs (bench/run.sh checks).
 *
 * Commands are interleaved: every round runs each command once, the start
 * rotating by one per round, so a burst of load from elsewhere hits all of
 * them alike. WARMUP rounds are run and dropped. OUT gets one line a run:
 *   ID  ROUND  NANOSECONDS  MAXRSS-KIB
 * A run whose exit status differs from EXIT-STATUS stops the driver with
 * exit 1: a benchmark of an error is no benchmark.
 *
 * The driver is linked statically and keeps almost nothing in memory (each
 * run's line goes to OUT's stdio buffer at once), so what fork copies into
 * the child, which ru_maxrss would carry over, stays far below the
 * smallest command measured.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_CMDS 64
#define MAX_ARGS 64
#define MAX_ENV 512

struct cmd {
	char *id;
	char *input;
	int status;
	char *unlink_first;
	char *argv[MAX_ARGS];
	char *envp[MAX_ENV];
};

static struct cmd cmds[MAX_CMDS];
static int ncmds;

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "driver: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	exit(2);
}

/* Splits s at sep in place into at most max-1 fields; a NULL ends them. */
static int split(char *s, char sep, char **out, int max)
{
	int n = 0;
	while (*s) {
		while (*s == sep)
			s++;
		if (!*s)
			break;
		if (n == max - 1)
			die("too many fields in a spec line", NULL);
		out[n++] = s;
		while (*s && *s != sep)
			s++;
		if (*s)
			*s++ = '\0';
	}
	out[n] = NULL;
	return n;
}

/* The driver's environment with each NAME=VALUE of `extra` laid over it. */
static void build_env(struct cmd *c, char *extra)
{
	char *over[MAX_ENV];
	int nover = 0, n = 0;
	if (strcmp(extra, "-") != 0)
		nover = split(extra, ' ', over, MAX_ENV);
	for (char **e = environ; *e; e++) {
		size_t len = strcspn(*e, "=");
		int replaced = 0;
		for (int i = 0; i < nover; i++)
			if (strncmp(over[i], *e, len) == 0 && over[i][len] == '=')
				replaced = 1;
		if (!replaced) {
			if (n >= MAX_ENV - nover - 1)
				die("environment too large", NULL);
			c->envp[n++] = *e;
		}
	}
	for (int i = 0; i < nover; i++)
		c->envp[n++] = over[i];
	c->envp[n] = NULL;
}

static void read_spec(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		die("cannot open the spec", strerror(errno));
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	while ((len = getline(&line, &cap, f)) > 0) {
		if (line[len - 1] == '\n')
			line[--len] = '\0';
		if (len == 0 || line[0] == '#')
			continue;
		if (ncmds == MAX_CMDS)
			die("too many commands", NULL);
		char *copy = strdup(line);
		char *field[8];
		int n = 0;
		for (char *s = copy, *t; n < 6; s = t + 1) {
			field[n++] = s;
			t = strchr(s, '\t');
			if (!t)
				break;
			*t = '\0';
		}
		if (n != 6)
			die("a spec line needs six tab-separated fields", line);
		struct cmd *c = &cmds[ncmds++];
		c->id = field[0];
		c->input = field[1];
		c->status = atoi(field[2]);
		c->unlink_first = strcmp(field[3], "-") == 0 ? NULL : field[3];
		build_env(c, field[4]);
		if (split(field[5], ' ', c->argv, MAX_ARGS) == 0 || c->argv[0][0] != '/')
			die("argv[0] must be an absolute path", line);
	}
	free(line);
	fclose(f);
	if (ncmds == 0)
		die("the spec names no command", NULL);
}

static long long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* One run of c: its wall time in ns; *rss gets ru_maxrss (KiB). */
static long long run(const struct cmd *c, int devnull, long *rss)
{
	if (c->unlink_first && unlink(c->unlink_first) != 0 && errno != ENOENT)
		die("cannot remove", c->unlink_first);
	int in = open(c->input, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		die("cannot open the input", c->input);
	long long start = now_ns();
	pid_t pid = fork();
	if (pid < 0)
		die("fork", strerror(errno));
	if (pid == 0) {
		if (dup2(in, 0) < 0 || dup2(devnull, 1) < 0 || dup2(devnull, 2) < 0)
			_exit(126);
		execve(c->argv[0], c->argv, c->envp);
		_exit(127);
	}
	int status;
	struct rusage ru;
	while (wait4(pid, &status, 0, &ru) < 0)
		if (errno != EINTR)
			die("wait4", strerror(errno));
	long long took = now_ns() - start;
	close(in);
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	if (code != c->status) {
		fprintf(stderr, "driver: %s exited %d, expected %d\n", c->id, code, c->status);
		exit(1);
	}
	*rss = ru.ru_maxrss;
	return took;
}

int main(int argc, char **argv)
{
	if (argc != 5)
		die("usage: driver SPEC WARMUP ROUNDS OUT", NULL);
	read_spec(argv[1]);
	int warmup = atoi(argv[2]), rounds = atoi(argv[3]);
	if (warmup < 0 || rounds < 1)
		die("WARMUP must be >= 0 and ROUNDS >= 1", NULL);
	FILE *out = fopen(argv[4], "w");
	if (!out)
		die("cannot write", argv[4]);
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (devnull < 0)
		die("cannot open /dev/null", strerror(errno));
	for (int r = 0; r < warmup + rounds; r++) {
		for (int k = 0; k < ncmds; k++) {
			int i = (k + r) % ncmds;
			long maxrss;
			long long took = run(&cmds[i], devnull, &maxrss);
			if (r >= warmup)
				fprintf(out, "%s\t%d\t%lld\t%ld\n", cmds[i].id, r - warmup, took, maxrss);
		}
	}
	if (fclose(out) != 0)
		die("cannot write", argv[4]);
	return 0;
}
