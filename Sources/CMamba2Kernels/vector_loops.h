// What the vectorized loops of kernels.c, gemv.c and ssd_scan.c are compiled with (private to this target).
// The floating-point licences they were written for, per file rather than as package-wide flags (which SwiftPM
// allows only as unsafeFlags, refused in a dependency): a·b + c may become one FMA, and sums may be reassociated
// so the vectorizer can split them into lanes. NaN and infinity keep their meaning. Each file includes this once,
// after its other headers: the pragmas hold from there to the end of the file.
#ifndef CMAMBA2_VECTOR_LOOPS_H
#define CMAMBA2_VECTOR_LOOPS_H

#pragma clang fp contract(fast)
#pragma clang fp reassociate(on)

// A loop marked MK_CLONES is compiled for x86-64-v4 (AVX-512), v3 (AVX2 + FMA) and the baseline, the copy chosen
// by the loader from the CPU it runs on.
#if defined(__x86_64__) && defined(__linux__)
#define MK_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MK_CLONES
#endif

#endif
