# Model-state estimates (partition/estimate.c) and the zero-estimate tool.
#
# Included from tests/CMakeLists.txt it defines the tests; run with cmake -P (as the test
# estimate_cli does) it is the check of zero-estimate's output, so the test needs no other file.
if(CMAKE_SCRIPT_MODE_FILE)
  if(NOT DEFINED ESTIMATE)
    message(FATAL_ERROR "estimate.cmake: -DESTIMATE=<path to zero-estimate> is required")
  endif()

  # Ψ = 7.5e9, N = 8, bf16, stage 3 without offload: (2 + 2 + 12)Ψ/8 = 15e9 bytes
  # = 15e9 / 2^30 GiB = 13.97 GiB on the device, nothing on the host.
  execute_process(COMMAND ${ESTIMATE} --params 7.5e9 --world 8
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "zero-estimate --params 7.5e9 --world 8 exited ${rc}:\n${out}${err}")
  endif()
  if(NOT out MATCHES "\n *3 +none +8 +13\\.97 +0\\.00\n")
    message(FATAL_ERROR "no row 'stage 3, offload none, world 8: 13.97 GiB device, 0.00 GiB "
                        "host' in:\n${out}")
  endif()
  # Same size, stage 2 bf16 with optimizer offload, N = 8: device 2Ψ + 2Ψ/8 = 16.875e9 bytes
  # = 15.72 GiB; host 16Ψ/8 = 15e9 bytes = 13.97 GiB.
  if(NOT out MATCHES "\n *2 +cpu +8 +15\\.72 +13\\.97\n")
    message(FATAL_ERROR "no row 'stage 2, offload cpu, world 8: 15.72 / 13.97 GiB' in:\n${out}")
  endif()
  if(NOT out MATCHES "not included")
    message(FATAL_ERROR "the note that buffers and activations are not included is missing")
  endif()

  # Bad input: exit 2 with a message naming the flag and the value.
  foreach(args "--params;abc" "--params;7.5e9;--world;0" "--params;1B;--dtype;fp8"
               "--params;1B;--offload;disk" "--params;1B;--capacity;lots" "--world;8"
               "--params;1B;--worlds;1,,2" "--params;1B;--bogus;1")
    execute_process(COMMAND ${ESTIMATE} ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                    ERROR_VARIABLE err)
    if(NOT rc EQUAL 2)
      message(FATAL_ERROR "zero-estimate ${args}: exit ${rc}, expected 2\n${out}${err}")
    endif()
    if(NOT err MATCHES "zero-estimate: --")
      message(FATAL_ERROR "zero-estimate ${args}: no message naming the flag: ${err}")
    endif()
  endforeach()
  execute_process(COMMAND ${ESTIMATE} --params abc RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT err MATCHES "--params abc")
    message(FATAL_ERROR "zero-estimate --params abc: message does not name flag and value: ${err}")
  endif()
  execute_process(COMMAND ${ESTIMATE} --help RESULT_VARIABLE rc OUTPUT_VARIABLE out)
  if(NOT rc EQUAL 0 OR NOT out MATCHES "usage: zero-estimate")
    message(FATAL_ERROR "zero-estimate --help: exit ${rc}\n${out}")
  endif()
  message(STATUS "zero-estimate output and exit codes as expected")
  return()
endif()

add_executable(test_estimate ${CMAKE_CURRENT_LIST_DIR}/test_estimate.c)
target_link_libraries(test_estimate zero_internal)
add_test(NAME estimate COMMAND test_estimate)
add_test(NAME estimate_cli
  COMMAND ${CMAKE_COMMAND} -DESTIMATE=$<TARGET_FILE:zero-estimate>
          -P ${CMAKE_CURRENT_LIST_FILE})
set_tests_properties(estimate estimate_cli PROPERTIES LABELS unit TIMEOUT 60)
