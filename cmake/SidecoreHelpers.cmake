# A test's TIMEOUT property overrides `ctest --timeout`, so a slow build (ASan, TSan) stretches its
# timeouts here: scripts/test.sh sets it for the sanitizer tiers.
set(SIDECORE_TEST_TIMEOUT_SCALE 1 CACHE STRING "Whole number that multiplies every test's timeout")
if(NOT SIDECORE_TEST_TIMEOUT_SCALE MATCHES "^[1-9][0-9]*$")
  message(FATAL_ERROR "SIDECORE_TEST_TIMEOUT_SCALE must be a whole number >= 1, not '${SIDECORE_TEST_TIMEOUT_SCALE}'")
endif()

# sidecore_add_test(NAME <name> COMMAND <cmd...> LABELS <labels...> [TIMEOUT <s>] [ENVIRONMENT <k=v...>])
# Every test gets a timeout (times SIDECORE_TEST_TIMEOUT_SCALE) and a label, and logs at warning
# level unless the caller says otherwise.
function(sidecore_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "COMMAND;LABELS;ENVIRONMENT" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 60)
  endif()
  if(NOT T_LABELS)
    message(FATAL_ERROR "sidecore_add_test(${T_NAME}): every test needs a label")
  endif()
  math(EXPR T_TIMEOUT "${T_TIMEOUT} * ${SIDECORE_TEST_TIMEOUT_SCALE}")
  add_test(NAME ${T_NAME} COMMAND ${T_COMMAND})
  set_tests_properties(${T_NAME} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}"
    ENVIRONMENT "FI_TCP_IFACE=lo;SIDECORE_LOG_LEVEL=warn;${T_ENVIRONMENT}")
endfunction()
