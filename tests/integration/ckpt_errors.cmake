# Checkpoint error paths (test_ckpt.c): corrupt, truncated and missing shard files, garbled
# manifests, user.bin and `latest`, another model's checkpoint, a user blob larger than user_cap,
# calls inside an accumulation window and bad arguments — each the same status on every rank, the
# context unchanged and training on like a reference — plus what must work (replacing a checkpoint
# of the same step, ZERO_CKPT_KEEP, loading by the root or the step directory, at another stage or
# dtype). Included from tests/integration/CMakeLists.txt (ZERO_MPIRUN, ZERO_TEST_ENV). Each test
# has a scratch directory of its own under test-out, so tests running in parallel do not collide.
# Sanitizer builds (-DZERO_SANITIZE=ON): Open MPI's allocations at exit are not leaks of ours; a huge
# malloc returns NULL (as glibc's does) instead of aborting; a UBSan report fails the test.
set(ckpt_sanitizer_env "ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1"
                       "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
add_executable(test_ckpt test_ckpt.c)
target_link_libraries(test_ckpt zero_internal MPI::MPI_C)
foreach(np 1 2 3)
  add_test(NAME ckpt_errors_np${np}
           COMMAND ${ZERO_MPIRUN} -np ${np} $<TARGET_FILE:test_ckpt>
                   ${CMAKE_BINARY_DIR}/test-out/ckpt_errors_np${np})
  set_tests_properties(ckpt_errors_np${np} PROPERTIES TIMEOUT 120 LABELS "mpi"
                       ENVIRONMENT "${ckpt_sanitizer_env}"
                       PASS_REGULAR_EXPRESSION "test_ckpt: np ${np}, [0-9]+ cases, 0 failures")
endforeach()
# The same cases with shards read by pread (ZERO_CKPT_IO=pread) instead of the default mapping;
# the loads' INFO lines must say that no file was mapped.
add_test(NAME ckpt_errors_pread_np2
         COMMAND ${ZERO_MPIRUN} -np 2 $<TARGET_FILE:test_ckpt>
                 ${CMAKE_BINARY_DIR}/test-out/ckpt_errors_pread_np2)
set_tests_properties(ckpt_errors_pread_np2 PROPERTIES TIMEOUT 120 LABELS "mpi"
                     ENVIRONMENT "${ckpt_sanitizer_env};ZERO_CKPT_IO=pread;CKPT_TEST_DEBUG=INFO;ZERO_DEBUG_SUBSYS=INIT"
                     PASS_REGULAR_EXPRESSION "ZERO_CKPT_IO=pread: 0 of the [1-9][0-9]* files it opened mapped.*test_ckpt: np 2, [0-9]+ cases, 0 failures")

# A bounded fuzz loop over the manifest and the shard headers (fuzz_ckpt.c): 300 fixed-seed
# mutations after one targeted pass over every numeric field, each loaded and parsed; any status
# but OK / IO / INVALID, a crash, a hang or a context that moved fails it. To run it under
# AddressSanitizer and UBSan, configure with -DZERO_SANITIZE=ON (fuzz_ckpt.c's header has the
# commands; the options below matter only in that build).
add_executable(fuzz_ckpt fuzz_ckpt.c)
target_link_libraries(fuzz_ckpt zero_internal)
add_test(NAME ckpt_fuzz
         COMMAND ${ZERO_MPIRUN} -np 1 $<TARGET_FILE:fuzz_ckpt>
                 ${CMAKE_BINARY_DIR}/test-out/ckpt_fuzz 300)
set_tests_properties(ckpt_fuzz PROPERTIES TIMEOUT 120 LABELS "mpi"
                     ENVIRONMENT "${ckpt_sanitizer_env}"
                     PASS_REGULAR_EXPRESSION "fuzz_ckpt: [0-9]+ iterations, 0 failures")
