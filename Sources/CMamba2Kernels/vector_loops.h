// What the vectorized loops of kernels.c, gemv.c and ssd_scan.c are compiled with (private to this target).
// The floating-point licences they were written for, per file rather than as package-wide flags (which SwiftPM
// allows only as unsafeFlags, refused in a dependency): a·b + c may become one FMA, and sums may be reassociated
// so the vectorizer can split them into lanes. NaN and infinity keep their meaning. Each file includes this once,
// after its other headers: the pragmas hold from there to the end of the file.
#ifndef CMAMBA2_VECTOR_LOOPS_H
#define CMAMBA2_VECTOR_LOOPS_H

#pragma clang fp contract(fast)
#pragma clang fp reassociate(on)

#include "clones.h"

#endif
