/**
 * `upload:<uuid>`: an image the client uploaded first through POST /v1/uploads. Here, not in the seed
 * schema (controlnet.ts), so that staging inputs (dispatch, finalize, reconcile) does not bundle classic zod.
 */
export const UPLOAD_REF = /^upload:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;
export const isUploadRef = (value: string): boolean => UPLOAD_REF.test(value);
