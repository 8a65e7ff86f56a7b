# Host kernels (kernels/kernels.h) against independent references.
add_executable(test_kernels ${CMAKE_CURRENT_LIST_DIR}/test_kernels.c)
target_link_libraries(test_kernels zero_internal)
# Same floating-point flags as kernels.c: the test's scalar loop over zero_math.h must round
# exactly like the library (no fma contraction).
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/test_kernels.c PROPERTIES
  COMPILE_OPTIONS "-ffp-contract=off;-fno-math-errno;-fno-trapping-math")
add_test(NAME kernels COMMAND test_kernels)
set_tests_properties(kernels PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=2" TIMEOUT 120)
set_tests_properties(kernels PROPERTIES LABELS unit)
