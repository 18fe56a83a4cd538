/** The part of @lhncbc/ucum-lhc (ships no type declarations) that ucum.ts uses. */
declare module '@lhncbc/ucum-lhc' {
  interface ValidateResult {
    status: 'valid' | 'invalid' | 'error';
    ucumCode: string | null;
    msg?: string[];
    unit?: { code: string; name: string };
  }
  interface ConvertResult {
    status: 'succeeded' | 'failed' | 'error';
    toVal: number | null;
    msg?: string[];
    fromUnit?: unknown;
    toUnit?: unknown;
  }
  export class UcumLhcUtils {
    static getInstance(): UcumLhcUtils;
    validateUnitString(unit: string, suggest?: boolean): ValidateResult;
    convertUnitTo(from: string, value: number, to: string, options?: { molecularWeight?: number }): ConvertResult;
  }
}
