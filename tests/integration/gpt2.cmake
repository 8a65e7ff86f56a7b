# Tests of the GPT-2 example (zero-gpt2). This file has two roles:
#  - included from tests/integration/CMakeLists.txt, it declares the tests;
#  - run as `cmake -DMODE=... -DMPIRUN=... -DEXE=... [-DOUT=...] -P gpt2.cmake`, it is the
#    checker those tests call (train: the loss must fall; stages: ZeRO stages 0-3 must train
#    bit-identical parameters through the tied embedding's two gradient contributions).

if(NOT CMAKE_SCRIPT_MODE_FILE)
  if(NOT TARGET zero-gpt2) # no CBLAS found: examples/CMakeLists.txt skipped the example
    return()
  endif()
  add_test(NAME gpt2_gradcheck COMMAND zero-gpt2 --gradcheck)
  set_tests_properties(gpt2_gradcheck PROPERTIES TIMEOUT 120)
  foreach(mode train stages)
    add_test(NAME gpt2_${mode}
             COMMAND ${CMAKE_COMMAND} -DMODE=${mode}
                     -DMPIRUN=${CMAKE_SOURCE_DIR}/scripts/zero-mpirun
                     -DEXE=$<TARGET_FILE:zero-gpt2> -DOUT=${CMAKE_BINARY_DIR}/test-out/gpt2
                     -P ${CMAKE_CURRENT_LIST_FILE})
    set_tests_properties(gpt2_${mode} PROPERTIES TIMEOUT 300 LABELS "mpi")
  endforeach()
  return()
endif()

# ---- checker (script mode) -------------------------------------------------------------------

foreach(v MODE MPIRUN EXE)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "gpt2.cmake: -D${v}=... is required")
  endif()
endforeach()

# gpt2_run(<out-var> <env assignments...> -- <flags...>): runs zero-gpt2 on 2 ranks, prints its
# output, fails the test unless it exits 0, and returns the output in <out-var>.
function(gpt2_run out_var)
  set(envs "")
  set(flags "")
  set(in_flags OFF)
  foreach(a ${ARGN})
    if(a STREQUAL "--")
      set(in_flags ON)
    elseif(in_flags)
      list(APPEND flags ${a})
    else()
      list(APPEND envs ${a})
    endif()
  endforeach()
  execute_process(COMMAND ${CMAKE_COMMAND} -E env ${envs} ${MPIRUN} -np 2 ${EXE} ${flags}
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  message("$ ${envs} zero-mpirun -np 2 zero-gpt2 ${flags}\n${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "FAIL: zero-gpt2 exited with ${rc}")
  endif()
  set(${out_var} "${out}" PARENT_SCOPE)
endfunction()

# The loss printed on step line `step` ("step    1/30 | loss 5.5428 | ..."): <out-var> in units
# of 1e-4 (CMake's math is integer only), <out-var>_text as printed.
function(gpt2_step_loss out_var text step)
  if(NOT text MATCHES "step +${step}/[0-9]+ \\| loss ([0-9]+)\\.([0-9][0-9][0-9][0-9])")
    message(FATAL_ERROR "FAIL: no loss printed for step ${step}")
  endif()
  math(EXPR v "${CMAKE_MATCH_1} * 10000 + 1${CMAKE_MATCH_2} - 10000") # 1xxxx: no octal
  set(${out_var} ${v} PARENT_SCOPE)
  set(${out_var}_text "${CMAKE_MATCH_1}.${CMAKE_MATCH_2}" PARENT_SCOPE)
endfunction()

set(SMALL --layers 1 --dim 32 --heads 2 --seq 16 --batch 4)

if(MODE STREQUAL "train")
  # 30 steps on 2 ranks: from ~ln(256) = 5.55 the loss must fall by at least 1 nat.
  gpt2_run(out -- ${SMALL} --steps 30)
  gpt2_step_loss(first "${out}" 1)
  gpt2_step_loss(last "${out}" 30)
  if(NOT out MATCHES "final loss [0-9]")
    message(FATAL_ERROR "FAIL: no 'final loss' line")
  endif()
  math(EXPR drop "${first} - ${last}")
  if(drop LESS 10000)
    message(FATAL_ERROR "FAIL: the loss went from ${first_text} (step 1) to ${last_text} "
                        "(step 30); expected it to fall by at least 1.0")
  endif()
  message("ok: the loss fell from ${first_text} (step 1) to ${last_text} (step 30)")

elseif(MODE STREQUAL "stages")
  # Small buckets put every module in a chunk of its own, so at stages 2-3 wte's bucket stays
  # open from the head's backward to the embedding's, while the blocks' chunks are reduced (and,
  # at stage 3, gathered) in between. The runtime's one layout makes every stage perform the
  # same additions: the parameter digests must be equal.
  if(NOT DEFINED OUT)
    message(FATAL_ERROR "gpt2.cmake: -DOUT=... is required for MODE=stages")
  endif()
  file(MAKE_DIRECTORY ${OUT})
  foreach(dtype fp32 bf16)
    set(ref "")
    foreach(stage 0 1 2 3)
      set(report ${OUT}/stages_${dtype}_s${stage}.json)
      file(REMOVE ${report})
      gpt2_run(out ZERO_STAGE=${stage} ZERO_DTYPE=${dtype} ZERO_BUCKET_MB=16K ZERO_PERSIST_KB=0
               ZERO_REPORT=${report} -- --layers 2 --dim 32 --heads 2 --seq 16 --batch 4
               --steps 12 --quiet)
      file(READ ${report} json)
      string(JSON digest GET "${json}" param_digest)
      string(JSON chunks GET "${json}" num_chunks)
      if(chunks LESS 4)
        message(FATAL_ERROR "FAIL: ${chunks} chunks; expected one per module (4)")
      endif()
      if(stage EQUAL 3)
        string(JSON gathers GET "${json}" stage3 gathers)
        if(gathers LESS 1)
          message(FATAL_ERROR "FAIL: stage 3 gathered nothing")
        endif()
      endif()
      message("${dtype} stage ${stage}: param_digest ${digest}")
      if(ref STREQUAL "")
        set(ref ${digest})
      elseif(NOT digest STREQUAL ref)
        message(FATAL_ERROR "FAIL: ${dtype} stage ${stage} digest ${digest} != stage 0 ${ref}")
      endif()
    endforeach()
    message("ok: ${dtype}: stages 0-3 trained the same bits")
  endforeach()

else()
  message(FATAL_ERROR "gpt2.cmake: unknown MODE '${MODE}'")
endif()
