# FindSlurm: Slurm's development headers (Debian's libslurm-dev ships neither a pkg-config nor a CMake
# file). Defines Slurm_FOUND, Slurm_VERSION, Slurm_VERSION_MAJOR_MINOR (22.05), Slurm_INCLUDE_DIR,
# Slurm_PLUGIN_DIR and the imported target Slurm::headers (include directories only: a SPANK plugin
# resolves slurm_* symbols from the process that loads it).
#
# Slurm_CONFIG_DIR is the folder of the slurm.conf (and plugstack.conf) that this Slurm reads by
# default (Debian: /etc/slurm).
# Slurm_PLUGIN_DIR is the folder where this Slurm's daemons look for plugins when slurm.conf sets no
# PluginDir: the default compiled into libslurm (Debian: /usr/lib/<triplet>/slurm-wlm; upstream's own
# build: <libdir>/slurm). Empty when libslurm is not found.
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
    set(Slurm_VERSION_MAJOR_MINOR "${_slurm_major}.${_slurm_minor}")
  endif()
  unset(_slurm_version_line)
endif()

# The default PluginDir is a plain string in libslurm (slurm_conf's default_plugin_path): the one
# absolute path there that names a lib folder and ends in slurm or slurm-<something>.
find_library(Slurm_LIBRARY NAMES slurm DOC "libslurm, read for its default PluginDir")
if(Slurm_LIBRARY AND NOT DEFINED CACHE{Slurm_PLUGIN_DIR})
  file(STRINGS "${Slurm_LIBRARY}" _slurm_plugin_dirs REGEX "^/[^ :]*/lib[^ :]*/slurm(-[a-z]+)?$")
  set(_slurm_plugin_dir "")
  if(_slurm_plugin_dirs)
    list(GET _slurm_plugin_dirs 0 _slurm_plugin_dir)
  endif()
  set(Slurm_PLUGIN_DIR "${_slurm_plugin_dir}" CACHE PATH "where Slurm's daemons load plugins from (its default PluginDir)")
  unset(_slurm_plugin_dirs)
  unset(_slurm_plugin_dir)
endif()
# Its default configuration file, a string beside it: "<folder>/slurm.conf".
if(Slurm_LIBRARY AND NOT DEFINED CACHE{Slurm_CONFIG_DIR})
  file(STRINGS "${Slurm_LIBRARY}" _slurm_conf_files REGEX "^/[^ :]*/slurm\\.conf$")
  set(_slurm_config_dir "")
  if(_slurm_conf_files)
    list(GET _slurm_conf_files 0 _slurm_conf_file)
    get_filename_component(_slurm_config_dir "${_slurm_conf_file}" DIRECTORY)
  endif()
  set(Slurm_CONFIG_DIR "${_slurm_config_dir}" CACHE PATH "the folder of Slurm's default slurm.conf and plugstack.conf")
  unset(_slurm_conf_files)
  unset(_slurm_conf_file)
  unset(_slurm_config_dir)
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Slurm REQUIRED_VARS Slurm_INCLUDE_DIR VERSION_VAR Slurm_VERSION)
mark_as_advanced(Slurm_INCLUDE_DIR Slurm_LIBRARY Slurm_PLUGIN_DIR Slurm_CONFIG_DIR)

if(Slurm_FOUND AND NOT TARGET Slurm::headers)
  add_library(Slurm::headers INTERFACE IMPORTED)
  set_target_properties(Slurm::headers PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${Slurm_INCLUDE_DIR}")
endif()
