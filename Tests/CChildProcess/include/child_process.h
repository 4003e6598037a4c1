#ifndef TORUS_CHILD_PROCESS_H
#define TORUS_CHILD_PROCESS_H

#include <sys/types.h>

/// Starts `path` with `argv` and `envp` (both NULL-terminated) through posix_spawn,
/// in `directory` (NULL: the parent's), with `stdin_fd` as its standard input
/// (-1: /dev/null) and `output_fd` as both its standard output and error. Every
/// other descriptor is closed in the child (closefrom 3), so a test process holding
/// thousands of sockets hands none of them on. Returns 0 and the child's pid, or an
/// errno value.
int torus_spawn(const char *path, char *const argv[], char *const envp[],
                const char *directory, int stdin_fd, int output_fd, pid_t *pid);

/// pipe2(fds, O_CLOEXEC): a pipe neither end of which a child inherits by accident, both
/// ends at descriptor 3 or above (so a closed standard descriptor is never reused).
int torus_pipe_cloexec(int fds[2]);

#endif
