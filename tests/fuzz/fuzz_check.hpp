// What every fuzz target shares: a check that stays in optimised builds and stops the fuzzer.
//
// A broken invariant is a finding just like a sanitizer report, so it must end the run with a crash
// libFuzzer records (and saves the input for); __builtin_trap() does that without unwinding through
// the code under test. The message names the check so the report is readable without a debugger.
#pragma once

#include <cstdio>

#define SIDECORE_FUZZ_CHECK(condition)                                                           \
  do {                                                                                           \
    if (!(condition)) {                                                                          \
      std::fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #condition); \
      __builtin_trap();                                                                          \
    }                                                                                            \
  } while (false)
