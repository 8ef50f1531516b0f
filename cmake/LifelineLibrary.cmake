# lifeline_library(NAME SOURCES ... DEPS ...)
# Declares one module as a static library with its explicit dependencies, so the CMake graph is the
# architecture: src/<name>/ becomes lifeline_<name>, includes are rooted at src/ ("common/result.h").
function(lifeline_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(lifeline_${name} STATIC ${ARG_SOURCES})
  target_include_directories(lifeline_${name} PUBLIC "${PROJECT_SOURCE_DIR}/src")
  target_link_libraries(lifeline_${name} PUBLIC ${ARG_DEPS})
endfunction()

# lifeline_unit_test(NAME SOURCES ... DEPS ...): a GoogleTest binary labelled "unit".
function(lifeline_unit_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}/tests")
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} lifeline_test_support GTest::gtest GTest::gtest_main)
  set(labels unit ${ARG_LABELS})
  gtest_discover_tests(${name} PROPERTIES LABELS "${labels}" DISCOVERY_TIMEOUT 30)
endfunction()
