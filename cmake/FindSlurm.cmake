# FindSlurm: Slurm's development headers (Debian's libslurm-dev ships neither a pkg-config nor a CMake
# file). Defines Slurm_FOUND, Slurm_VERSION, Slurm_INCLUDE_DIR and the imported target Slurm::headers
# (include directories only: a SPANK plugin resolves slurm_* symbols from the process that loads it).
find_path(Slurm_INCLUDE_DIR NAMES slurm/spank.h DOC "folder holding slurm/spank.h")
if(Slurm_INCLUDE_DIR AND EXISTS "${Slurm_INCLUDE_DIR}/slurm/slurm_version.h")
  # SLURM_VERSION_NUMBER is 0xMMmmuu (22.05.8 is 0x160508).
  file(STRINGS "${Slurm_INCLUDE_DIR}/slurm/slurm_version.h" _slurm_version_line
       REGEX "^#define[ \t]+SLURM_VERSION_NUMBER[ \t]+0x[0-9a-fA-F]+")
  if(_slurm_version_line MATCHES "0x([0-9a-fA-F][0-9a-fA-F])([0-9a-fA-F][0-9a-fA-F])([0-9a-fA-F][0-9a-fA-F])")
    math(EXPR _slurm_major "0x${CMAKE_MATCH_1}")
    math(EXPR _slurm_minor "0x${CMAKE_MATCH_2}")
    math(EXPR _slurm_micro "0x${CMAKE_MATCH_3}")
    if(_slurm_minor LESS 10)
      set(_slurm_minor "0${_slurm_minor}")
    endif()
    set(Slurm_VERSION "${_slurm_major}.${_slurm_minor}.${_slurm_micro}")
  endif()
  unset(_slurm_version_line)
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Slurm REQUIRED_VARS Slurm_INCLUDE_DIR VERSION_VAR Slurm_VERSION)
mark_as_advanced(Slurm_INCLUDE_DIR)

if(Slurm_FOUND AND NOT TARGET Slurm::headers)
  add_library(Slurm::headers INTERFACE IMPORTED)
  set_target_properties(Slurm::headers PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${Slurm_INCLUDE_DIR}")
endif()
