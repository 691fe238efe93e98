/**
 * `upload:<uuid>`: an image the client uploaded first through POST /v1/uploads. Here, not in the seed
 * schema (controlnet.ts), so that staging inputs (dispatch, finalize, reconcile) does not bundle classic zod.
 */
export const UPLOAD_REF = /^upload:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;
export const isUploadRef = (value: string): boolean => UPLOAD_REF.test(value);

/** The request fields that carry an image (a URL, base64, an upload or, once staged, a stored input). */
export const IMAGE_FIELDS = ["init_image", "control_image", "mask_image", "ip_adapter_image"] as const;

/** Our own stored inputs are referred to as s3://<inputs bucket>/<key> inside a job's request. */
export const S3_REF = /^s3:\/\/([^/]+)\/(.+)$/;
