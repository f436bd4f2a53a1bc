/* The C API is implemented in Swift (Sources/LabelDBC, @_cdecl); this target only carries its
 * header, so the Swift implementation sees the same struct layouts as C callers. */
#include "labeldb.h"
