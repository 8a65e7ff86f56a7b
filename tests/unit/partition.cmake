# Partition arithmetic: layouts, slices and segments over random tensor sets; memory formulas.
add_executable(test_partition ${CMAKE_CURRENT_LIST_DIR}/test_partition.c)
target_link_libraries(test_partition zero_internal)
add_test(NAME partition COMMAND test_partition)
set_tests_properties(partition PROPERTIES LABELS unit TIMEOUT 60)
