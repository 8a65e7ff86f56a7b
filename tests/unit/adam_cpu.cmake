# CPU Adam (kernels/adam_cpu.c): every SIMD path this CPU has, bitwise against zk_adamw.
add_executable(test_adam_cpu ${CMAKE_CURRENT_LIST_DIR}/test_adam_cpu.c)
target_link_libraries(test_adam_cpu zero_internal)
# Same floating-point flags as the kernels: the test evaluates zero_math.h itself.
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/test_adam_cpu.c PROPERTIES
  COMPILE_OPTIONS "-ffp-contract=off;-fno-math-errno;-fno-trapping-math")
add_test(NAME adam_cpu COMMAND test_adam_cpu)
set_tests_properties(adam_cpu PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=2" TIMEOUT 120)
set_tests_properties(adam_cpu PROPERTIES LABELS unit)
