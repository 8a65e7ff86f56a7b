# stacked_compare (examples/stacked/compare.sh): the libzero port of a plain C trainer with stacked
# per-layer tensors (stacked-zero) against the trainer itself (stacked-plain): the same losses at
# np 1 stage 0, the same bytes across stages 0-3 at np 2, evaluation passes at stage 3 without a
# gather-order warning, bf16 through the port's fp32 views, the same initial weights at np 1, 2
# and 4. docs/PORTING.md walks through the port. Included from tests/integration/CMakeLists.txt.
if(TARGET stacked-plain AND TARGET stacked-zero)
  add_test(NAME stacked_compare
           COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/compare.sh $<TARGET_FILE_DIR:stacked-zero>
                   ${CMAKE_BINARY_DIR}/test-out/stacked_compare)
  set_tests_properties(stacked_compare PROPERTIES TIMEOUT 120 LABELS "mpi"
                       PASS_REGULAR_EXPRESSION "stacked compare: PASS"
                       FAIL_REGULAR_EXPRESSION "FAIL")
endif()
