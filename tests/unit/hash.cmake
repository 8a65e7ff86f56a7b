# XXH3-64 on every vector path (kernels/hash.c): against libxxhash's own XXH3_64bits.
add_executable(test_hash ${CMAKE_CURRENT_LIST_DIR}/test_hash.c)
target_link_libraries(test_hash zero_internal)
add_test(NAME hash COMMAND test_hash)
set_tests_properties(hash PROPERTIES TIMEOUT 120 LABELS unit)
