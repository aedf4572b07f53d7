/* libFuzzer target: arbitrary bytes as an audio file from memory through FFmpeg (probe,
 * demux, decode, resample to 16 kHz mono), streamed in odd-sized chunks with caps on the input
 * size and on the decoded duration; the first second of what decodes goes through the log-mel
 * front end. Every sample must be finite-or-not without crashing; errors are fine.
 *
 * Seeds: any short audio files (e.g. `ffmpeg -i tests/data/audio/jfk.wav -t 0.2 seed.{wav,flac,mp3,ogg,opus,m4a}`). */
#include "mmpipe/mmpipe.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUT   (1 << 20)          /* bytes */
#define MAX_SAMPLES (16000 * 20)       /* 20 s of output */

static volatile double sink;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    mmp_audio_quiet_ffmpeg();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > MAX_INPUT) return 0;
    mmp_audio_reader *r = mmp_audio_open_memory(data, size, "fuzz", 0);
    if (!r) return 0;
    mmp_audio_info info = mmp_audio_get_info(r);
    sink += info.duration_s + info.src_sample_rate + info.src_channels;
    static float buf[16000];
    int64_t total = 0, k = 0;
    size_t chunk = 1 + (size % 4093);   /* odd chunk sizes exercise the buffering */
    float *first = malloc(sizeof(float) * 16000);
    int64_t n_first = 0;
    while (first && total < MAX_SAMPLES) {
        if (mmp_audio_read(r, buf, (int64_t)chunk, &k) != MMP_OK || k == 0) break;
        for (int64_t i = 0; i < k; i++) sink += buf[i];
        int64_t take = k < 16000 - n_first ? k : 16000 - n_first;
        if (take > 0) {
            memcpy(first + n_first, buf, (size_t)take * sizeof(float));
            n_first += take;
        }
        total += k;
    }
    mmp_audio_close(r);
    if (first && n_first >= 400) {
        mmp_mel_params p = mmp_mel_params_default();
        p.n_samples = 0;
        mmp_mel *m = mmp_mel_new(p);
        float *mel = m ? malloc(sizeof(float) * 80 * (size_t)mmp_mel_n_frames(m, n_first)) : NULL;
        if (mel && mmp_mel_compute(m, first, n_first, mel) == MMP_OK) sink += mel[0];
        free(mel);
        mmp_mel_free(m);
    }
    free(first);
    return 0;
}
