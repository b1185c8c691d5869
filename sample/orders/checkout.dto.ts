import { IsIn, IsInt, IsNotEmpty, IsString, Max, Min } from 'class-validator';

/** The input of the checkout workflow; emit() validates it, so a bad order never starts a run. */
export class CheckoutDto {
  @IsString()
  @IsNotEmpty()
  orderId!: string;

  @IsString()
  @IsNotEmpty()
  sku!: string;

  @IsInt()
  @Min(1)
  @Max(100)
  quantity!: number;

  @IsInt()
  @Min(1)
  amountCents!: number;

  /** A payment token; 'tok_declined' is refused by the simulated provider. */
  @IsIn(['tok_visa', 'tok_mastercard', 'tok_declined'])
  paymentToken!: string;
}

export interface CheckoutResult {
  orderId: string;
  reservationId: string;
  chargeId: string;
  confirmedAt: string;
}
