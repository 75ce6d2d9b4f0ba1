/* A function library whose mere loading leaves a trace: its constructor creates the file named by
 * SIDECORE_TEST_LOAD_MARKER in the executor's environment. The security tests check that no
 * unauthenticated peer can make an executor load it. */
#include <stdio.h>
#include <stdlib.h>

__attribute__((constructor)) static void mark_loaded(void) {
  const char *path = getenv("SIDECORE_TEST_LOAD_MARKER");
  if (path == NULL || *path == '\0') return;
  FILE *file = fopen(path, "w");
  if (file != NULL) fclose(file);
}

int marker_noop(void) { return 0; }
