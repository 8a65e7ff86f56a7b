# AdamW / Adam-L2 bitwise against PyTorch: torch-produced reference vectors (tests/adam_ref/,
# written by gen_ref.py, torch's version in adam_ref.txt) replayed on every update path.
add_executable(test_adam_torch ${CMAKE_CURRENT_LIST_DIR}/test_adam_torch.c)
target_link_libraries(test_adam_torch zero_internal)
# Same floating-point flags as the kernels: the test evaluates zero_math.h itself.
set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/test_adam_torch.c PROPERTIES
  COMPILE_OPTIONS "-ffp-contract=off;-fno-math-errno;-fno-trapping-math")
add_test(NAME adam_torch
         COMMAND test_adam_torch ${CMAKE_CURRENT_LIST_DIR}/../adam_ref/adam_ref.bin)
set_tests_properties(adam_torch PROPERTIES ENVIRONMENT "OMP_NUM_THREADS=2" TIMEOUT 120
                     LABELS unit)
