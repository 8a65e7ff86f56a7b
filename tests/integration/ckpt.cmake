# Checkpoint cases that drive the examples (ckpt.sh says what each shows): exact continuation
# over the stage x dtype x offload x accumulation matrix, loading at other world sizes and stages,
# crash safety with a rank killed at random points of zero_save (crash_shim.c, LD_PRELOAD), and
# zero-gpt2's --save-every / --resume / ZERO_CKPT_KEEP.
add_library(zero_crash_shim MODULE crash_shim.c)
target_link_libraries(zero_crash_shim PRIVATE ${CMAKE_DL_LIBS})
foreach(c continue anywhere crash gpt2)
  add_test(NAME ckpt_${c} COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/ckpt.sh ${c})
  set_tests_properties(ckpt_${c} PROPERTIES
    ENVIRONMENT "${ZERO_TEST_ENV};CRASH_SHIM=$<TARGET_FILE:zero_crash_shim>"
    TIMEOUT 300 LABELS "mpi" PASS_REGULAR_EXPRESSION "ckpt ${c}: PASS")
endforeach()
