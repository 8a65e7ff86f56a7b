# zero-tokens (tools/zero_tokens.c) on a small text: the bytes of the files it writes (header
# words, tokens equal to the text, uint32 width, shards, validation split), --info, and bad token
# files and command lines with their exit statuses (tokens_tool.sh). No MPI; a second or less.
add_test(NAME tokens_tool
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/tokens_tool.sh $<TARGET_FILE:zero-tokens>
                 ${CMAKE_CURRENT_BINARY_DIR}/tokens_tool)
set_tests_properties(tokens_tool PROPERTIES TIMEOUT 30 PASS_REGULAR_EXPRESSION "tokens_tool: PASS")
