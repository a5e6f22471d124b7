# Writes build_info.h with the program version and the checkout's git commit at build time
# (not configure time), so checkpoints, `version` and `bench` name the commit that was built;
# "-dirty" when tracked files differ from it. The header is rewritten only when its content
# changes, so an unchanged commit recompiles nothing.
#   cmake -DSOURCE_DIR=... -DOUTPUT=.../build_info.h -DPROJECT_VERSION=x.y.z -P build_info.cmake
execute_process(COMMAND git rev-parse --short=12 HEAD
  WORKING_DIRECTORY ${SOURCE_DIR} OUTPUT_VARIABLE SDXL_GIT_COMMIT
  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT SDXL_GIT_COMMIT)
  set(SDXL_GIT_COMMIT "unknown")
else()
  execute_process(COMMAND git diff --quiet HEAD -- WORKING_DIRECTORY ${SOURCE_DIR} RESULT_VARIABLE dirty
    ERROR_QUIET)
  if(dirty EQUAL 1)
    string(APPEND SDXL_GIT_COMMIT "-dirty")
  endif()
endif()
configure_file(${SOURCE_DIR}/cmake/build_info.h.in ${OUTPUT}.tmp @ONLY)
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different ${OUTPUT}.tmp ${OUTPUT})
file(REMOVE ${OUTPUT}.tmp)
