/* SIDECORE_TEST_TIME_SCALE: how much longer than usual tests allow things to take. Sanitizer builds
 * and loaded machines run everything slower, so every bound a test checks on elapsed time is
 * multiplied by it (scripts/test.sh sets it for the sanitizer tiers). A positive float; 1 when unset
 * or invalid. Only bounds scale, never a wait whose length is what a test measures. C and C++. */
#ifndef SIDECORE_TESTS_TIME_SCALE_H
#define SIDECORE_TESTS_TIME_SCALE_H

#include <stdlib.h>

static inline double sidecore_test_time_scale(void) {
  const char *text = getenv("SIDECORE_TEST_TIME_SCALE");
  if (text == NULL || *text == '\0') return 1.0;
  char *end = NULL;
  const double scale = strtod(text, &end);
  return end != NULL && *end == '\0' && scale > 0.0 && scale < 1000.0 ? scale : 1.0;
}

#endif
