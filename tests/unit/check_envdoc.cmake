# cmake -P script: regenerates ENV.md with zero-envdoc into GENERATED and fails, with a diff and
# the command that fixes it, when the committed EXPECTED (docs/ENV.md) differs.
foreach(v ENVDOC EXPECTED GENERATED)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "check_envdoc.cmake: -D${v}=... is required")
  endif()
endforeach()

execute_process(COMMAND ${ENVDOC} ${GENERATED} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${ENVDOC} ${GENERATED} failed (exit ${rc})")
endif()
if(NOT EXISTS ${EXPECTED})
  message(FATAL_ERROR "${EXPECTED} is missing. Generate it with:\n"
                      "  cmake --build build --target update-envdoc")
endif()

file(READ ${GENERATED} generated)
file(READ ${EXPECTED} expected)
if(NOT generated STREQUAL expected)
  find_program(DIFF diff)
  if(DIFF)
    execute_process(COMMAND ${DIFF} -u ${EXPECTED} ${GENERATED})
  endif()
  message(FATAL_ERROR "docs/ENV.md is out of date with the table in runtime/config.c. "
                      "Regenerate it with:\n"
                      "  cmake --build build --target update-envdoc\n"
                      "(or: build/bin/zero-envdoc docs/ENV.md) and commit the result.")
endif()
message(STATUS "docs/ENV.md matches the table in runtime/config.c")
