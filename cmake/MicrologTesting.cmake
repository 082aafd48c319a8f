# Test registration helpers: every suite is registered through these, so the
# list of tests is the list of files, never a hand-kept list.

find_package(PkgConfig REQUIRED)
pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)

# In the address-sanitizer build the extension is instrumented but the
# interpreter is not, so the ASan runtime must be preloaded into Python
# (ML_ASAN_RUNTIME). CPython's own allocations are not ours to leak-check.
if(ML_SANITIZE STREQUAL "address")
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libasan.so
                  OUTPUT_VARIABLE ML_ASAN_RUNTIME OUTPUT_STRIP_TRAILING_WHITESPACE)
  set(ML_SANITIZER_TEST_ENV "ASAN_OPTIONS=detect_leaks=0:abort_on_error=0"
      "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
endif()

# ml_add_c_test(NAME SOURCES... LIBS ...): one cmocka executable per unit.
function(ml_add_c_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA ml_warnings ml_sanitize)
  add_test(NAME c/${name} COMMAND ${name})
  # no collector is autostarted and no spool file lands in the user's home
  set_tests_properties(c/${name} PROPERTIES LABELS "c;unit" TIMEOUT 120
    ENVIRONMENT "MICROLOG_AUTOSTART=0;MICROLOG_SPOOL_DIR=${PROJECT_BINARY_DIR}/test-spool/c")
endfunction()

# ml_add_pytest(NAME DIR [SERIAL] [LABELS ...] [TIMEOUT s] [ARGS ...]): a
# pytest directory or file run by the project's Python with the freshly
# built package first on sys.path. SERIAL: no other test runs beside it
# (tests that compare sampling against the program's own clock). ARGS: more
# pytest arguments (e.g. --ignore of a file that has an entry of its own).
function(ml_add_pytest name dir)
  cmake_parse_arguments(T "SERIAL" "TIMEOUT" "LABELS;ARGS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  set(env "PYTHONPATH=${ML_PYTHON_DIR}" "MICROLOGD=$<TARGET_FILE:micrologd>"
      "ML_SOURCE_DIR=${PROJECT_SOURCE_DIR}" "ML_BUILD_DIR=${PROJECT_BINARY_DIR}"
      "ML_SANITIZE=${ML_SANITIZE}" "MICROLOG_AUTOSTART=0"
      "MICROLOG_SPOOL_DIR=${PROJECT_BINARY_DIR}/test-spool/${name}")
  if(ML_SANITIZE STREQUAL "address")
    list(APPEND env "LD_PRELOAD=${ML_ASAN_RUNTIME}" ${ML_SANITIZER_TEST_ENV})
  endif()
  add_test(NAME py/${name}
           COMMAND ${Python3_EXECUTABLE} -m pytest -q -p no:cacheprovider ${T_ARGS} ${dir})
  set_tests_properties(py/${name} PROPERTIES
    LABELS "python;${T_LABELS}" TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "${env}")
  if(T_SERIAL)
    set_tests_properties(py/${name} PROPERTIES RUN_SERIAL TRUE)
  endif()
endfunction()
