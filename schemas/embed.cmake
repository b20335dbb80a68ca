# embed.cmake - turns each schemas/NAME.avsc into a C string constant
# `dr_schema_NAME_json` (used at build time by CMakeLists.txt).
string(REPLACE "," ";" NAMES "${NAMES}")
set(body "/* Generated from the schemas/ .avsc files by schemas/embed.cmake; do not edit. */\n")
foreach(name ${NAMES})
  file(READ ${SRC}/${name}.avsc hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND body "const char dr_schema_${name}_json[] = {${bytes}0x00};\n")
endforeach()
file(WRITE ${OUT}.tmp "${body}")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
