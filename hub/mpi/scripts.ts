/**
 * Names in scripts other than Latin and Han: Cyrillic, Arabic, Khmer, Greek, Hangul, Thai… are
 * transliterated to Latin (any-ascii) so that Дмитрий and Dmitriy, សុខ and Sokh compare at all
 * (before, they folded to nothing). Han keeps its own path (pinyin, hub/mpi/names.ts). Arabic is
 * written without short vowels (محمد → mhmd), so across scripts a name is also compared by its
 * consonant skeleton (`skeleton`: mohammed → mhmd). Chosen over `transliteration` (npm) after
 * measuring both on the same samples: Khmer សុខ ចាន់ → "sokh chana" against "sukh caan" (the
 * usual romanisation is Sok Chan), ស្រីមុំ → "sreimoam" against "sriimuM", Arabic فاطمة → "ftmh"
 * against "fTm@"; Cyrillic alike ("Dmitriy Ivanov"). Pure.
 */
// any-ascii is an ES module only; Node (20.19+) and jest (which transforms it) load it with require.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const anyAscii = (require('any-ascii') as { default: (text: string) => string }).default;

/** Letters of a script that is neither Latin nor Han (digits and punctuation do not count). */
const OTHER_SCRIPT = /(?![\p{Script=Latin}\p{Script=Han}])\p{L}/u;

export function hasOtherScript(text: string): boolean {
  return OTHER_SCRIPT.test(text);
}

/** Latin transliteration of a name in another script (unchanged when it has none). */
export function toLatin(text: string): string {
  return hasOtherScript(text) ? anyAscii(text) : text;
}

/**
 * Consonant skeleton of a folded Latin name: common spelling variants folded (ph/f, ck/q/kh → k,
 * dh/d, th/t, sh/s), vowels (and y, w) dropped, a final h dropped (Arabic ة: فاطمة → ftmh,
 * Fatima), doubled letters once: Mohammed / Muhammad / mhmd → mhmd, Aisha / عائشة → s,
 * Dmitriy / Dmitry → dmtr. Arabic script writes no short vowels and any-ascii renders ain and
 * alef as nothing or a vowel, so only consonants compare across scripts.
 */
export function skeleton(folded: string): string {
  const s = folded
    .replace(/ph/g, 'f')
    .replace(/ck|q|kh/g, 'k')
    .replace(/dh/g, 'd')
    .replace(/th/g, 't')
    .replace(/sh/g, 's')
    .replace(/[aeiouyw]/g, '')
    .replace(/h$/, '');
  return s.replace(/(.)\1+/g, '$1');
}

/** Two folded names agree by skeleton: a one-letter skeleton only for short names (Ali / علي, not Alexander / Lee). */
export function sameSkeleton(a: string, b: string): boolean {
  const x = skeleton(a);
  return x !== '' && x === skeleton(b) && (x.length >= 2 || (a.length <= 5 && b.length <= 5));
}
