/* The bench's C floor: one single-threaded pass over /proc that finds every pty fd and keys it by
 * (devpts instance, index), the least work any one-shot pty inventory must do. Prints a JSON line. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static int is_pid(const char *name) {
  if (!*name) return 0;
  for (const char *c = name; *c; c++)
    if (*c < '0' || *c > '9') return 0;
  return 1;
}

/* The tty-index: line of /proc/PID/fdinfo/FD (a ptmx master's pty index), or -1. */
static int master_index(int proc_fd, const char *pid, const char *fd) {
  char path[600], buf[512];
  snprintf(path, sizeof path, "%s/fdinfo/%s", pid, fd);
  int f = openat(proc_fd, path, O_RDONLY | O_CLOEXEC);
  if (f < 0) return -1;
  ssize_t n = read(f, buf, sizeof buf - 1);
  close(f);
  if (n <= 0) return -1;
  buf[n] = 0;
  char *line = strstr(buf, "tty-index:");
  return line ? atoi(line + 10) : -1;
}

int main(int argc, char **argv) {
  const char *root = argc > 1 ? argv[1] : "/proc";
  int proc_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (proc_fd < 0) { perror(root); return 1; }
  DIR *procs = fdopendir(dup(proc_fd));
  long processes = 0, fds = 0, masters = 0, slaves = 0, holders = 0;
  unsigned long long keys = 0; /* a checksum over (dev, index), so no work can be skipped */
  struct dirent *p;
  while ((p = readdir(procs)) != NULL) {
    if (!is_pid(p->d_name)) continue;
    char path[300], link[256];
    snprintf(path, sizeof path, "%s/fd", p->d_name);
    int dir_fd = openat(proc_fd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) continue; /* exited, or not ours to read */
    processes++;
    DIR *fd_dir = fdopendir(dir_fd);
    int holds = 0;
    struct dirent *f;
    while ((f = readdir(fd_dir)) != NULL) {
      if (f->d_name[0] == '.') continue;
      fds++;
      ssize_t n = readlinkat(dir_fd, f->d_name, link, sizeof link - 1);
      if (n <= 0) continue;
      link[n] = 0;
      int master = strstr(link, "ptmx") != NULL;
      if (!master && strncmp(link, "/dev/pts/", 9) != 0) continue;
      struct stat st;
      if (fstatat(dir_fd, f->d_name, &st, 0) != 0) continue;
      int index = master ? master_index(proc_fd, p->d_name, f->d_name) : (int)minor(st.st_rdev);
      if (index < 0) continue;
      keys += ((unsigned long long)st.st_dev << 20) ^ (unsigned long long)index;
      if (master) masters++; else slaves++;
      holds = 1;
    }
    closedir(fd_dir);
    if (holds) {
      /* A holder's stat line (start time, tty): what an inventory reads about each holder. */
      char stat[1024];
      snprintf(path, sizeof path, "%s/stat", p->d_name);
      int s = openat(proc_fd, path, O_RDONLY | O_CLOEXEC);
      if (s >= 0) {
        if (read(s, stat, sizeof stat) > 0) holders++;
        close(s);
      }
    }
  }
  closedir(procs);
  printf("{\"processes\":%ld,\"fds\":%ld,\"masters\":%ld,\"slaves\":%ld,\"holders\":%ld,\"checksum\":%llu}\n",
         processes, fds, masters, slaves, holders, keys);
  return 0;
}
