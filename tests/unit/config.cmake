# Configuration table (runtime/config.c), logging (util/log.c) and the generated docs/ENV.md.
add_executable(test_config ${CMAKE_CURRENT_LIST_DIR}/test_config.c)
target_link_libraries(test_config PRIVATE zero_internal)
target_compile_definitions(test_config PRIVATE ZERO_TEST_TMPDIR="${CMAKE_CURRENT_BINARY_DIR}")
add_test(NAME config COMMAND test_config)

# docs/ENV.md must be what zero-envdoc writes from the table.
add_test(NAME envdoc
  COMMAND ${CMAKE_COMMAND}
    -DENVDOC=$<TARGET_FILE:zero-envdoc>
    -DEXPECTED=${CMAKE_SOURCE_DIR}/docs/ENV.md
    -DGENERATED=${CMAKE_CURRENT_BINARY_DIR}/ENV.md
    -P ${CMAKE_CURRENT_LIST_DIR}/check_envdoc.cmake)
set_tests_properties(config envdoc PROPERTIES LABELS unit)
