# The token loader (test_data.c, data.sh): the same global batches at every world size, every
# epoch every window once and reshuffled, resume by position (at another world size, across an
# epoch boundary), every bad-data case named on every rank, fuzzed headers. Included from
# tests/integration/CMakeLists.txt (ZERO_MPIRUN). Sanitizer builds as in ckpt_errors.cmake.
add_executable(test_data test_data.c)
target_link_libraries(test_data zero_internal MPI::MPI_C)
add_test(NAME data_union_resume
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/data.sh $<TARGET_FILE:test_data> ${ZERO_MPIRUN}
                 ${CMAKE_BINARY_DIR}/test-out/data_union_resume)
set_tests_properties(data_union_resume PROPERTIES TIMEOUT 240 LABELS "mpi"
                     ENVIRONMENT "ASAN_OPTIONS=detect_leaks=0"
                     PASS_REGULAR_EXPRESSION "data.sh: [0-9]+ checks, 0 failures")

# Every bad-data case (wrong magic, wrong version, a count that disagrees with the size, a
# truncated file, a token >= the vocabulary at open and while training, an empty list, a pattern
# that matches nothing, a file shorter than one window, ranks that see other files or settings)
# gives its named error on every rank; text, 32-bit and llm.c llama files load right.
set(data_sanitizer_env "ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1"
                       "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
foreach(np 1 2 3)
  add_test(NAME data_errors_np${np}
           COMMAND ${ZERO_MPIRUN} -np ${np} $<TARGET_FILE:test_data> errors
                   ${CMAKE_BINARY_DIR}/test-out/data_errors_np${np})
  set_tests_properties(data_errors_np${np} PROPERTIES TIMEOUT 120 LABELS "mpi"
                       ENVIRONMENT "${data_sanitizer_env}"
                       PASS_REGULAR_EXPRESSION "test_data errors: rank 0, np ${np}, [0-9]+ cases, 0 failures")
endforeach()
# the same cases read through pread (the runs of windows in one preadv, checked after)
add_test(NAME data_errors_pread_np2
         COMMAND ${ZERO_MPIRUN} -np 2 $<TARGET_FILE:test_data> errors
                 ${CMAKE_BINARY_DIR}/test-out/data_errors_pread_np2)
set_tests_properties(data_errors_pread_np2 PROPERTIES TIMEOUT 120 LABELS "mpi"
                     ENVIRONMENT "${data_sanitizer_env};ZERO_DATA_IO=pread"
                     PASS_REGULAR_EXPRESSION "test_data errors: rank 0, np 2, [0-9]+ cases, 0 failures")
# Mutated headers, counts and sizes (fixed seed): never a crash, only OK / INVALID / IO; run it
# in a -DZERO_SANITIZE=ON build for AddressSanitizer and UBSan.
add_test(NAME data_fuzz
         COMMAND ${ZERO_MPIRUN} -np 2 $<TARGET_FILE:test_data> fuzz
                 ${CMAKE_BINARY_DIR}/test-out/data_fuzz 200)
set_tests_properties(data_fuzz PROPERTIES TIMEOUT 120 LABELS "mpi"
                     ENVIRONMENT "${data_sanitizer_env}"
                     PASS_REGULAR_EXPRESSION "test_data fuzz: rank 0, 200 iterations .*, 0 failures")

# zero-gpt2 through the loader (data_gpt2.sh): a token file trains like the text it came from, a
# resumed run like an uninterrupted one, --val, the report's data section, a token >= 256 refused.
if(TARGET zero-gpt2)
  add_test(NAME data_gpt2
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/data_gpt2.sh ${CMAKE_BINARY_DIR}/bin
                   ${ZERO_MPIRUN} ${CMAKE_BINARY_DIR}/test-out/data_gpt2
                   ${CMAKE_SOURCE_DIR}/examples/gpt2/data/corpus.txt)
  set_tests_properties(data_gpt2 PROPERTIES TIMEOUT 240 LABELS "mpi"
                       ENVIRONMENT "ASAN_OPTIONS=detect_leaks=0"
                       PASS_REGULAR_EXPRESSION "data_gpt2.sh: [0-9]+ checks, 0 failures")
endif()
