// MK_CLONES: a function compiled for x86-64-v4 (AVX-512), v3 (AVX2 + FMA + F16C) and the baseline, the copy
// chosen by the loader from the CPU it runs on (private to this target; no floating-point licences of its own).
#ifndef CMAMBA2_CLONES_H
#define CMAMBA2_CLONES_H

#if defined(__x86_64__) && defined(__linux__)
#define MK_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MK_CLONES
#endif

#endif
