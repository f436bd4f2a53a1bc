#include <xxhash.h>
#if defined(__x86_64__)
/* Runtime-dispatched variants (SSE2/AVX2/AVX-512): the same hash values, faster on long inputs. */
#define XXH_DISPATCH_DISABLE_REPLACE 1
#include <xxh_x86dispatch.h>
#endif
