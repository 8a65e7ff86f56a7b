# zero-ckpt (tools/zero_ckpt.c) on checkpoints zero-mlp writes: verify, export equal to
# zero_export byte for byte, diff, info, and corrupt, truncated and missing files (ckpt_tool.sh).
add_test(NAME ckpt_tool COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/ckpt_tool.sh)
set_tests_properties(ckpt_tool PROPERTIES ENVIRONMENT "${ZERO_TEST_ENV}" TIMEOUT 120
                     LABELS "mpi" PASS_REGULAR_EXPRESSION "ckpt_tool: PASS")
