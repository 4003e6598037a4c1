#define _GNU_SOURCE
#include "child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>

// Both ends land at descriptor 3 or above. A test process started with a standard
// descriptor closed (CI runs with no standard input) would otherwise get 0, 1 or 2
// from pipe2, and the spawn's actions (open /dev/null as 0, dup2 onto 1 and 2) would
// close or overwrite the pipe before the child could use it.
static int torus_above_standard(int fd) {
    if (fd > 2) return fd;
    int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    close(fd);
    return moved;
}

int torus_pipe_cloexec(int fds[2]) {
    int raw[2];
    if (pipe2(raw, O_CLOEXEC) != 0) return -1;
    int first = torus_above_standard(raw[0]);
    int second = torus_above_standard(raw[1]);
    if (first < 0 || second < 0) {
        if (first >= 0) close(first);
        if (second >= 0) close(second);
        return -1;
    }
    fds[0] = first;
    fds[1] = second;
    return 0;
}

int torus_spawn(const char *path, char *const argv[], char *const envp[],
                const char *directory, int stdin_fd, int output_fd, pid_t *pid) {
    posix_spawn_file_actions_t actions;
    int error = posix_spawn_file_actions_init(&actions);
    if (error != 0) return error;
    if (stdin_fd >= 0) {
        error = posix_spawn_file_actions_adddup2(&actions, stdin_fd, 0);
    } else {
        error = posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    }
    if (error == 0) error = posix_spawn_file_actions_adddup2(&actions, output_fd, 1);
    if (error == 0) error = posix_spawn_file_actions_adddup2(&actions, output_fd, 2);
    if (error == 0 && directory != NULL) error = posix_spawn_file_actions_addchdir_np(&actions, directory);
    if (error == 0) error = posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    if (error == 0) {
        posix_spawnattr_t attributes;
        error = posix_spawnattr_init(&attributes);
        if (error == 0) {
            // The child starts with default signal dispositions and an empty mask (the
            // test process may block or ignore signals the child relies on).
            sigset_t all, none;
            sigfillset(&all);
            sigemptyset(&none);
            posix_spawnattr_setsigdefault(&attributes, &all);
            posix_spawnattr_setsigmask(&attributes, &none);
            posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
            error = posix_spawn(pid, path, &actions, &attributes, argv, envp);
            posix_spawnattr_destroy(&attributes);
        }
    }
    posix_spawn_file_actions_destroy(&actions);
    return error;
}
