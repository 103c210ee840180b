// The element types the C kernels read, one definition each (private to this target): bf16 ↔ float32,
// fp16 scales, and llama.cpp's block layouts.
#ifndef CMAMBA2_ELEMENT_TYPES_H
#define CMAMBA2_ELEMENT_TYPES_H

#include <stdint.h>
#include <string.h>

static inline float mk_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } c;
    c.u = (uint32_t)h << 16;
    return c.f;
}

// Round to nearest even; a NaN stays a (quiet) NaN.
static inline uint16_t mk_f32_to_bf16_one(float f) {
    union { float f; uint32_t u; } c;
    c.f = f;
    if ((c.u & 0x7F800000u) == 0x7F800000u && (c.u & 0x7FFFFFu)) return 0x7FC0;
    return (uint16_t)((c.u + 0x7FFFu + ((c.u >> 16) & 1u)) >> 16);
}

#if defined(__x86_64__) || defined(__aarch64__)
// The fp16 scale at the start of a block (unaligned).
static inline float mk_h2f(const uint8_t *p) {
    _Float16 h;
    memcpy(&h, p, 2);
    return (float)h;
}
#endif

// llama.cpp's blocks of 32 weights: Q8_0 an fp16 scale d and 32 int8 q (w = d·q); Q4_0 d and 16 bytes whose low
// nibbles are weights 0–15 and high nibbles 16–31 (w = d·(q − 8)).
#define MK_Q8_BLOCK 34
#define MK_Q4_BLOCK 18

#endif
