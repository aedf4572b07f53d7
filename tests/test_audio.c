/* Audio input through FFmpeg: formats, resampling, streaming, bad files. */
#include "testutil.h"
#include "mmpipe/audio.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

static float *decode(const char *path, int64_t *n) {
    float *x = NULL;
    enum mmp_status st = mmp_audio_decode_file(path, 600.0, &x, n, NULL);
    if (st != MMP_OK) fail_msg("%s: %s", path, mmp_last_error());
    return x;
}

/* 44-byte canonical WAV header (PCM). */
static void wav_header(uint8_t *h, uint32_t rate, uint16_t channels, uint16_t bits, uint32_t data_bytes) {
    uint32_t byte_rate = rate * channels * (bits / 8u);
    uint16_t align = (uint16_t)(channels * (bits / 8u));
    memcpy(h, "RIFF", 4);
    uint32_t v = 36 + data_bytes;
    memcpy(h + 4, &v, 4);
    memcpy(h + 8, "WAVEfmt ", 8);
    v = 16;
    memcpy(h + 16, &v, 4);
    uint16_t fmt = 1;
    memcpy(h + 20, &fmt, 2);
    memcpy(h + 22, &channels, 2);
    memcpy(h + 24, &rate, 4);
    memcpy(h + 28, &byte_rate, 4);
    memcpy(h + 32, &align, 2);
    memcpy(h + 34, &bits, 2);
    memcpy(h + 36, "data", 4);
    memcpy(h + 40, &data_bytes, 4);
}

static void test_wav_vs_flac(void **state) {
    (void)state;
    int64_t nw = 0, nf = 0;
    float *w = decode(mmpt_data("audio/jfk.wav"), &nw);   /* 16 kHz mono s16 */
    float *f = decode(mmpt_data("audio/jfk.flac"), &nf);  /* 44.1 kHz stereo 24-bit */
    print_message("jfk.wav %lld samples, jfk.flac -> %lld samples\n", (long long)nw, (long long)nf);
    assert_int_equal(nw, 176000);
    assert_true(llabs(nf - nw) <= 1);
    int64_t n = nw < nf ? nw : nf, worst = 0;
    double maxd = 0;
    for (int64_t i = 0; i < n; i++) {
        /* the wav is the flac resampled and rounded to 16 bits: compare in LSBs */
        double d = fabs((double)w[i] - (double)f[i]) * 32768.0;
        if (d > maxd) { maxd = d; worst = i; }
    }
    print_message("max |wav - flac| = %.3f LSB (16-bit) at sample %lld\n", maxd, (long long)worst);
    assert_true(maxd <= 1.0 + 1e-3);
    free(w);
    free(f);
}

static void test_memory_equals_file(void **state) {
    (void)state;
    size_t len = 0;
    void *bytes = mmpt_read_file(mmpt_data("audio/jfk.flac"), &len);
    assert_non_null(bytes);
    float *a = NULL, *b = NULL;
    int64_t na = 0, nb = 0;
    assert_int_equal(mmp_audio_decode_memory(bytes, len, "jfk.flac", 600, &a, &na, NULL), MMP_OK);
    b = decode(mmpt_data("audio/jfk.flac"), &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, (size_t)na * sizeof(float));
    free(a);
    free(b);
    free(bytes);
}

static void test_info_and_chunks(void **state) {
    (void)state;
    mmp_audio_reader *r = mmp_audio_open(mmpt_data("audio/jfk.flac"), 0);
    assert_non_null(r);
    mmp_audio_info info = mmp_audio_get_info(r);
    assert_int_equal(info.src_sample_rate, 44100);
    assert_int_equal(info.src_channels, 2);
    assert_int_equal(info.sample_rate, 16000);
    assert_string_equal(info.codec, "flac");
    assert_true(fabs(info.duration_s - 11.0) < 0.01);
    /* odd chunk sizes give the same samples as one big read */
    int64_t nref = 0;
    float *ref = decode(mmpt_data("audio/jfk.flac"), &nref);
    float chunk[777];
    int64_t pos = 0, k = 0;
    do {
        assert_int_equal(mmp_audio_read(r, chunk, 777, &k), MMP_OK);
        assert_true(pos + k <= nref);
        assert_memory_equal(chunk, ref + pos, (size_t)k * sizeof(float));
        pos += k;
    } while (k > 0);
    assert_int_equal(pos, nref);
    assert_int_equal(mmp_audio_position(r), nref);
    /* after the end: still 0, no error */
    assert_int_equal(mmp_audio_read(r, chunk, 10, &k), MMP_OK);
    assert_int_equal(k, 0);
    mmp_audio_close(r);
    free(ref);
}

static bool have_ffmpeg(void) { return system("ffmpeg -version > /dev/null 2>&1") == 0; }

/* Best normalised correlation of b against a over lags in [-maxlag, maxlag]. */
static double best_corr(const float *a, int64_t na, const float *b, int64_t nb, int maxlag, int *lag_out) {
    double best = -2;
    for (int lag = -maxlag; lag <= maxlag; lag += 1) {
        double sab = 0, saa = 0, sbb = 0;
        for (int64_t i = 0; i < na; i += 4) {
            int64_t j = i + lag;
            if (j < 0 || j >= nb) continue;
            sab += (double)a[i] * b[j];
            saa += (double)a[i] * a[i];
            sbb += (double)b[j] * b[j];
        }
        double c = saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : 0;
        if (c > best) { best = c; *lag_out = lag; }
    }
    return best;
}

static void check_encoded(const char *ext, const char *args, double min_corr) {
    char *tmp = mmpt_write_temp("", 0, ext);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ffmpeg -nostdin -loglevel error -y -i '%s' %s '%s' 2>/dev/null", mmpt_data("audio/jfk.wav"),
             args, tmp);
    if (system(cmd) != 0) {
        print_message("SKIP %s: ffmpeg could not encode (%s)\n", ext, args);
        unlink(tmp);
        free(tmp);
        return;
    }
    int64_t nw = 0, nx = 0;
    float *w = decode(mmpt_data("audio/jfk.wav"), &nw);
    float *x = decode(tmp, &nx);
    int lag = 0;
    double c = best_corr(w, nw, x, nx, 64, &lag);
    mmp_audio_reader *r = mmp_audio_open(tmp, 0);
    assert_non_null(r);
    mmp_audio_info info = mmp_audio_get_info(r);
    print_message("%-5s %-8s %6d Hz %d ch -> %lld samples (wav %lld), duration %.3f s, corr %.5f at lag %d\n", ext,
                  info.codec, info.src_sample_rate, info.src_channels, (long long)nx, (long long)nw, (double)nx / 16000.0,
                  c, lag);
    mmp_audio_close(r);
    /* duration within 50 ms (encoder padding is trimmed by the decoders that know it) */
    assert_true(llabs(nx - nw) <= 800);
    assert_true(c >= min_corr);
    free(w);
    free(x);
    unlink(tmp);
    free(tmp);
}

static void test_compressed_formats(void **state) {
    (void)state;
    if (!have_ffmpeg()) {
        print_message("SKIP: the ffmpeg CLI is not installed (scripts/deps.sh installs it)\n");
        skip();
    }
    /* resampled and upmixed on the way in, so the decoder resamples and downmixes back */
    check_encoded(".mp3", "-ar 44100 -ac 2 -b:a 128k", 0.98);
    check_encoded(".opus", "-ar 48000 -ac 2 -c:a libopus -b:a 64k", 0.95);
    check_encoded(".ogg", "-ar 22050 -ac 1 -c:a libvorbis -q:a 5", 0.98);
    check_encoded(".m4a", "-ar 32000 -ac 2 -c:a aac -b:a 128k", 0.98);
    check_encoded(".wav", "-ar 8000 -ac 1 -c:a pcm_u8", 0.9);  /* band-limited to 4 kHz */
}

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

static void test_ten_hours_streamed(void **state) {
    (void)state;
    /* A sparse file: a WAV header claiming 10 h of 16 kHz mono s16, then holes (zeros). */
    const uint32_t rate = 16000;
    const uint64_t n = 10ull * 3600 * rate;
    uint8_t h[44];
    wav_header(h, rate, 1, 16, (uint32_t)(n * 2));
    char *path = mmpt_write_temp(h, sizeof h, ".wav");
    assert_int_equal(truncate(path, (off_t)(44 + n * 2)), 0);
    mmp_audio_reader *r = mmp_audio_open(path, 0);
    assert_non_null(r);
    mmp_audio_info info = mmp_audio_get_info(r);
    assert_true(fabs(info.duration_s - 36000.0) < 1.0);
    enum { CHUNK = 16000 * 30 };
    float *chunk = malloc(CHUNK * sizeof(float));
    assert_non_null(chunk);
    int64_t total = 0, k = 0;
    long rss0 = 0, rss_max = 0;
    double maxabs = 0;
    for (int it = 0;; it++) {
        assert_int_equal(mmp_audio_read(r, chunk, CHUNK, &k), MMP_OK);
        if (k == 0) break;
        for (int64_t i = 0; i < k; i++) maxabs = fmax(maxabs, fabsf(chunk[i]));
        total += k;
        long rss = rss_kb();
        if (it == 4) rss0 = rss;
        if (rss > rss_max) rss_max = rss;
    }
    mmp_audio_close(r);
    print_message("10 h of silence: %lld samples streamed, RSS after 2.5 min %ld kB, max %ld kB, max |x| %g\n",
                  (long long)total, rss0, rss_max, maxabs);
    assert_int_equal(total, (int64_t)n);
    assert_true(maxabs == 0.0);
#ifndef UNDER_ASAN
    /* Without ASan (whose quarantine keeps freed blocks resident) RSS must stay flat. */
    assert_true(rss_max - rss0 < 16 * 1024);
#endif
    /* the convenience decoder stops at its limit and says so */
    float *x = NULL;
    int64_t nx = 0;
    bool trunc = false;
    assert_int_equal(mmp_audio_decode_file(path, 5.0, &x, &nx, &trunc), MMP_OK);
    assert_int_equal(nx, 5 * 16000);
    assert_true(trunc);
    free(x);
    free(chunk);
    unlink(path);
    free(path);
}

/* A FIFO (no seeking, no size): a child process writes jfk.wav into it while we decode. */
static void test_fifo(void **state) {
    (void)state;
    char dir[] = "/tmp/mmpt-fifoXXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/audio.wav", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    size_t len = 0;
    void *wav = mmpt_read_file(mmpt_data("audio/jfk.wav"), &len);
    assert_non_null(wav);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(path, O_WRONLY);
        size_t off = 0;
        while (fd >= 0 && off < len) {
            ssize_t k = write(fd, (char *)wav + off, len - off > 4096 ? 4096 : len - off);
            if (k <= 0) break;
            off += (size_t)k;
        }
        _exit(0);
    }
    float *x = NULL, *ref = NULL;
    int64_t n = 0, nref = 0;
    assert_int_equal(mmp_audio_decode_file(path, 600, &x, &n, NULL), MMP_OK);
    int status = 0;
    waitpid(pid, &status, 0);
    ref = decode(mmpt_data("audio/jfk.wav"), &nref);
    print_message("jfk.wav through a FIFO: %lld samples\n", (long long)n);
    assert_int_equal(n, nref);
    assert_memory_equal(x, ref, (size_t)n * sizeof(float));
    free(x);
    free(ref);
    free(wav);
    unlink(path);
    rmdir(dir);
}

static void expect_error(const char *path, const char *must_contain) {
    float *x = (float *)1;
    int64_t n = 123;
    enum mmp_status st = mmp_audio_decode_file(path, 60, &x, &n, NULL);
    print_message("  %s -> %s: %s\n", must_contain, mmp_status_str(st), mmp_last_error());
    assert_int_not_equal(st, MMP_OK);
    assert_null(x);
    assert_int_equal(n, 0);
    assert_non_null(strstr(mmp_last_error(), path));
    if (must_contain) assert_non_null(strstr(mmp_last_error(), must_contain));
}

static void test_bad_inputs(void **state) {
    (void)state;
    expect_error("/nonexistent/dir/none.wav", "No such file");
    expect_error(mmpt_data("audio"), "directory");
    char *p;
    /* a text file named .wav */
    const char *txt = "This is not audio at all, just a few lines of text.\nSecond line.\n";
    p = mmpt_write_temp(txt, strlen(txt), ".wav");
    expect_error(p, NULL);
    unlink(p);
    free(p);
    /* an empty file */
    p = mmpt_write_temp("", 0, ".wav");
    expect_error(p, NULL);
    unlink(p);
    free(p);
    uint8_t h[44 + 3200];
    memset(h, 0, sizeof h);
    /* zero-length audio: a valid header with no data */
    wav_header(h, 16000, 1, 16, 0);
    p = mmpt_write_temp(h, 44, ".wav");
    expect_error(p, "no audio");
    unlink(p);
    free(p);
    /* absurd sample rates */
    uint32_t rates[] = {0, 1, 999, 4000000000u};
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
        wav_header(h, rates[i], 1, 16, 3200);
        p = mmpt_write_temp(h, sizeof h, ".wav");
        expect_error(p, NULL);
        unlink(p);
        free(p);
    }
    /* zero channels */
    wav_header(h, 16000, 0, 16, 3200);
    p = mmpt_write_temp(h, sizeof h, ".wav");
    expect_error(p, NULL);
    unlink(p);
    free(p);
    /* truncated files: header cut short -> error; data cut short -> the samples that exist */
    size_t len = 0;
    uint8_t *wav = mmpt_read_file(mmpt_data("audio/jfk.wav"), &len);
    assert_non_null(wav);
    p = mmpt_write_temp(wav, 30, ".wav");
    expect_error(p, NULL);
    unlink(p);
    free(p);
    /* jfk.wav has a LIST chunk: find where the samples start */
    size_t hdr = 0;
    for (size_t i = 12; i + 8 <= len; i++)
        if (memcmp(wav + i, "data", 4) == 0) { hdr = i + 8; break; }
    assert_true(hdr > 0);
    p = mmpt_write_temp(wav, hdr + 2 * 16000, ".wav");
    float *x = NULL;
    int64_t n = 0;
    assert_int_equal(mmp_audio_decode_file(p, 60, &x, &n, NULL), MMP_OK);
    assert_int_equal(n, 16000);
    free(x);
    unlink(p);
    free(p);
    /* cut inside a sample: the decoder rejects the last (odd-sized) packet, the rest decodes */
    p = mmpt_write_temp(wav, hdr + 2 * 16000 + 1, ".wav");
    assert_int_equal(mmp_audio_decode_file(p, 60, &x, &n, NULL), MMP_OK);
    print_message("  wav cut inside a sample: %lld of 16000 samples\n", (long long)n);
    assert_true(n > 16000 - 4096 && n <= 16000);
    free(x);
    unlink(p);
    free(p);
    /* corrupt: flac with its frames overwritten by noise, and truncated flac: no crash, and
     * either an error naming the file or some samples */
    size_t flen = 0;
    uint8_t *flac = mmpt_read_file(mmpt_data("audio/jfk.flac"), &flen);
    assert_non_null(flac);
    uint64_t s = 12345;
    for (size_t i = 8192; i < flen; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        flac[i] = (uint8_t)s;
    }
    const size_t cuts[] = {4, 42, 8192 + 100, 100000, flen};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        enum mmp_status st = mmp_audio_decode_memory(flac, cuts[c], "corrupt.flac", 60, &x, &n, NULL);
        print_message("  corrupt flac, %zu bytes -> %s (%lld samples) %s\n", cuts[c], mmp_status_str(st), (long long)n,
                      st ? mmp_last_error() : "");
        if (st != MMP_OK) assert_non_null(strstr(mmp_last_error(), "corrupt.flac"));
        free(x);
    }
    free(flac);
    free(wav);
    /* bad arguments */
    assert_null(mmp_audio_open(NULL, 0));
    assert_null(mmp_audio_open(mmpt_data("audio/jfk.wav"), 5));
    assert_null(mmp_audio_open_memory(NULL, 0, "x", 0));
    assert_int_not_equal(mmp_audio_decode_file(mmpt_data("audio/jfk.wav"), 0, &x, &n, NULL), MMP_OK);
}

static void test_from_pcm(void **state) {
    (void)state;
    /* 1 s of a 440 Hz tone at 48 kHz, stereo with the right channel inverted and halved:
     * the mono mix is 0.25 sin */
    const int sr = 48000, n = 48000;
    float *pcm = malloc(sizeof(float) * 2 * n);
    assert_non_null(pcm);
    for (int i = 0; i < n; i++) {
        float v = sinf(2.0f * (float)M_PI * 440.0f * (float)i / (float)sr);
        pcm[2 * i] = v;
        pcm[2 * i + 1] = -0.5f * v;
    }
    float *out = NULL;
    int64_t no = 0;
    assert_int_equal(mmp_audio_from_pcm(pcm, n, 2, sr, &out, &no), MMP_OK);
    print_message("48 kHz stereo %d frames -> %lld samples at 16 kHz\n", n, (long long)no);
    assert_true(llabs(no - 16000) <= 2);
    double maxd = 0;
    for (int64_t i = 100; i < no - 100; i++) {
        double ref = 0.25 * sin(2.0 * M_PI * 440.0 * (double)i / 16000.0);
        maxd = fmax(maxd, fabs(out[i] - ref));
    }
    print_message("max |out - 0.25 sin| = %.2e\n", maxd);
    assert_true(maxd < 1e-3);
    free(out);
    assert_int_not_equal(mmp_audio_from_pcm(pcm, n, 2, 10, &out, &no), MMP_OK);
    assert_int_not_equal(mmp_audio_from_pcm(pcm, 0, 2, sr, &out, &no), MMP_OK);
    assert_int_not_equal(mmp_audio_from_pcm(pcm, n, 0, sr, &out, &no), MMP_OK);
    free(pcm);
}

int main(void) {
    mmp_audio_quiet_ffmpeg();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wav_vs_flac),
        cmocka_unit_test(test_memory_equals_file),
        cmocka_unit_test(test_info_and_chunks),
        cmocka_unit_test(test_compressed_formats),
        cmocka_unit_test(test_ten_hours_streamed),
        cmocka_unit_test(test_fifo),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_from_pcm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
