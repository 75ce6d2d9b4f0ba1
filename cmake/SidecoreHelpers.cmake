# sidecore_add_test(NAME <name> COMMAND <cmd...> LABELS <labels...> [TIMEOUT <s>] [ENVIRONMENT <k=v...>])
# Every test gets a timeout and a label, and logs at warning level unless the caller says otherwise.
function(sidecore_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "COMMAND;LABELS;ENVIRONMENT" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 60)
  endif()
  if(NOT T_LABELS)
    message(FATAL_ERROR "sidecore_add_test(${T_NAME}): every test needs a label")
  endif()
  add_test(NAME ${T_NAME} COMMAND ${T_COMMAND})
  set_tests_properties(${T_NAME} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}"
    ENVIRONMENT "FI_TCP_IFACE=lo;SIDECORE_LOG_LEVEL=warn;${T_ENVIRONMENT}")
endfunction()
